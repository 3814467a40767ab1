"""Semantic recall: retrieval where every item with the same shared factors is a positive.

On the offline scenes benchmark (``jaxmr.data.scenes``) a caption describes only its
image's shared factors, so the captions of another image with equal shared factors are as
right as the image's own: instance-level R@K caps below 100 %, and semantic recall counts a
hit when any of the top K shares all shared factors with the query.

Host-side numpy, blocked over query rows like :mod:`jaxmr.metrics.retrieval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_MAX_BLOCK_ELEMENTS = 1 << 24


def _top_k_hits(sims: np.ndarray, q: np.ndarray, keys: np.ndarray, ks: Sequence[int]) -> dict:
    """For each k, the share (percent) of rows whose top-k keys contain a semantic match.

    Ties at the k-th score are resolved by ``argsort`` order (stable on the key index); with
    continuous similarities they do not occur.
    """
    kmax = max(ks)
    hits = {k: 0 for k in ks}
    rows = max(1, _MAX_BLOCK_ELEMENTS // max(1, sims.shape[1]))
    for start in range(0, sims.shape[0], rows):
        block = np.asarray(sims[start : start + rows], np.float64)
        top = np.argsort(-block, axis=1, kind="stable")[:, :kmax]  # [b, kmax]
        match = np.all(keys[top] == q[start : start + rows, None, :], axis=-1)  # [b, kmax]
        first = np.where(match.any(axis=1), match.argmax(axis=1), kmax)
        for k in ks:
            hits[k] += int(np.sum(first < k))
    return {k: 100.0 * hits[k] / sims.shape[0] for k in ks}


def semantic_recall(
    sims: Any,
    img_shared: Any,
    cap_shared: Any,
    *,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Semantic R@K in both directions.

    i2t: for image i, a hit at K when one of the K captions with the highest ``sims[i, :]``
    has ``cap_shared[j] == img_shared[i]`` on every factor. t2i: the same over the columns.

    Args:
        sims: ``[N_img, N_caps]`` similarities.
        img_shared: ``[N_img, K]`` shared factors of the images.
        cap_shared: ``[N_caps, K]`` shared factors of the captions (for the benchmark,
            ``np.repeat(img_shared, 5, axis=0)``).
        ks: cut-offs.

    Returns:
        ``{"i2t/sR@K": …, "t2i/sR@K": …, "srsum": …}`` in percent.
    """
    sims = np.asarray(sims)
    img_shared = np.asarray(img_shared)
    cap_shared = np.asarray(cap_shared)
    if img_shared.ndim == 1:
        img_shared = img_shared[:, None]
    if cap_shared.ndim == 1:
        cap_shared = cap_shared[:, None]
    if sims.ndim != 2 or sims.shape != (img_shared.shape[0], cap_shared.shape[0]):
        raise ValueError(
            f"sims must be [N_img, N_caps] = [{img_shared.shape[0]}, {cap_shared.shape[0]}], "
            f"got {sims.shape}"
        )
    if img_shared.shape[1] != cap_shared.shape[1]:
        raise ValueError(f"img_shared {img_shared.shape} and cap_shared {cap_shared.shape} differ")
    ks = tuple(int(k) for k in ks)
    out: dict[str, float] = {}
    for name, s, q, keys in (
        ("i2t", sims, img_shared, cap_shared),
        ("t2i", sims.T, cap_shared, img_shared),
    ):
        for k, v in _top_k_hits(s, q, keys, ks).items():
            out[f"{name}/sR@{k}"] = v
    out["srsum"] = float(sum(out[f"{d}/sR@{k}"] for d in ("i2t", "t2i") for k in ks))
    return out
