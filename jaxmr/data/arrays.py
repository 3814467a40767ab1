"""Paired arrays from a user's `.npz` file and a deterministic, resumable batch loader."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping

import numpy as np

from jaxmr.data.samplers import IndexedPairSampler


def load_paired_npz(
    path: str | os.PathLike,
    *,
    query_key: str = "u",
    target_key: str = "x",
    factors_key: str | None = "s",
) -> dict[str, np.ndarray]:
    """Reads paired data from an `.npz` in the layout of the published iVAE data generator.

    Args:
      path: `.npz` file.
      query_key: array holding the query modality (conditions the prior), [N, ...].
      target_key: array holding the target modality (embedded by g), [N, ...].
      factors_key: array of true factors [N, d] if known; missing is allowed (no MCC then).

    Returns:
      dict with float32 `x` (query) [N, Dx], `y` (target) [N, Dy] and, if present, `s`.
      Arrays with more than 2 dims are flattened per example.

    Raises:
      FileNotFoundError / ValueError naming the file and the array at fault.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    # An .npz is a zip archive; anything else is refused here, before numpy would try it as a
    # pickle (its error then advises allow_pickle=True, which runs code from the file).
    if not zipfile.is_zipfile(path):
        raise ValueError(f"not an .npz archive: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"not an .npz archive: {path}") from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"not an .npz archive: {path}")
    with npz:
        available = sorted(npz.files)
        out = {}
        for role, key in (("x", query_key), ("y", target_key)):
            if key not in npz.files:
                raise ValueError(
                    f"{path}: missing array {key!r} (the {'query' if role == 'x' else 'target'}"
                    f" modality); arrays present: {available}. Set "
                    f"config.data.{'query_key' if role == 'x' else 'target_key'} to rename."
                )
            out[role] = _read_array(npz, key, path)
        if factors_key and factors_key in npz.files:
            out["s"] = _read_array(npz, factors_key, path)
    n = {k: len(v) for k, v in out.items()}
    if len(set(n.values())) != 1:
        names = {"x": query_key, "y": target_key, "s": factors_key}
        detail = ", ".join(f"{names[k]!r} has {v}" for k, v in n.items())
        raise ValueError(f"{path}: arrays have different lengths: {detail}")
    for k, v in out.items():
        if v.ndim == 1:
            v = v[:, None]
        out[k] = v.reshape(len(v), -1).astype(np.float32)
        if not np.all(np.isfinite(out[k])):
            raise ValueError(f"{path}: array for {k!r} contains NaN or inf")
    return out


def _read_array(npz, key: str, path: str) -> np.ndarray:
    """`npz[key]` with pickles refused (never loaded): a clear error instead of numpy's."""
    try:
        return np.asarray(npz[key])
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise ValueError(f"{path}: array {key!r} cannot be read: {e}") from e
        raise ValueError(
            f"{path}: array {key!r} holds Python objects (stored as a pickle), which jaxmr "
            "never loads; save it as a numeric array"
        ) from None


class ArrayLoader(IndexedPairSampler):
    """Deterministic mini-batches over in-memory arrays, addressable by step.

    The batch for global step t is a pure function of (seed, t): epoch e = t // steps_per_epoch
    uses the permutation drawn from `default_rng([seed, e])`, and the last partial batch of an
    epoch is dropped. So a resumed run sees exactly the data order of an uninterrupted one.

    With several processes each takes its contiguous slice of the global batch
    (`process_index`), so the global batch is the same whatever the process count.

    Per-example values computed by epoch hooks (e.g. clean-pair probabilities) are attached
    with `set_per_example` and come back gathered in every batch under their name.
    (The trainer's default sampler: an `IndexedPairSampler` with nothing gathered by index.)
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        super().__init__(
            arrays,
            None,
            batch_size=batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
        self.arrays = self.pairs
