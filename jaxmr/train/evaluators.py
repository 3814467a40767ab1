"""Host-side helpers shared by evaluators: chunked prediction over whole splits.

Evaluators themselves implement `jaxmr.train.task.Evaluator` and live with their method
(`jaxmr/tasks/<method>/`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from jaxmr.train.task import Evaluator


def predict_arrays(
    predict_fn: Callable,
    params,
    arrays: Mapping[str, np.ndarray],
    *,
    batch_size: int = 4096,
) -> dict[str, np.ndarray]:
    """Every output of a jitted `predict_fn(params, batch)` over all rows, on the host.

    The last chunk is padded to `batch_size` so one compiled shape serves every call.
    """
    n = len(next(iter(arrays.values())))
    bs = min(batch_size, n)
    out: dict[str, list[np.ndarray]] = {}
    for i in range(0, n, bs):
        chunk = {k: v[i : i + bs] for k, v in arrays.items()}
        m = len(next(iter(chunk.values())))
        if m < bs:
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], bs - m, 0)]) for k, v in chunk.items()}
        for k, v in predict_fn(params, chunk).items():
            out.setdefault(k, []).append(np.asarray(v)[:m])
    return {k: np.concatenate(v) for k, v in out.items()}


def predict_all(
    predict_fn: Callable,
    params,
    arrays: Mapping[str, np.ndarray],
    *,
    batch_size: int = 4096,
    key: str = "z",
) -> np.ndarray:
    """One output (`key`) of `predict_fn` over all rows (see `predict_arrays`)."""
    return predict_arrays(predict_fn, params, arrays, batch_size=batch_size)[key]


__all__ = ["Evaluator", "predict_all", "predict_arrays"]
