"""Held-out linear probes of known factors from embeddings: how much of each factor a code
carries (``heldout_r2``), used to measure the leakage of modality-exclusive factors into a
retrieval embedding, and how much of the shared factors it keeps.

Host-side numpy/sklearn; inputs are ``[N, D]`` codes and ``[N, K]`` factors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import RidgeCV

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-3, 4, 8))


def _targets(column: np.ndarray, categorical: bool) -> np.ndarray:
    if not categorical:
        return column[:, None].astype(np.float64)
    levels = np.unique(column)
    return (column[:, None] == levels[None, :]).astype(np.float64)


def _r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-column R² = 1 − SSE/SST (columns constant on the test rows score 0)."""
    sse = ((y - pred) ** 2).sum(axis=0)
    sst = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), 0.0)


def heldout_r2(
    codes: Any,
    factors: Any,
    *,
    categorical: Sequence[bool] | bool = False,
    seed: int = 0,
    train_fraction: float = 0.5,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> np.ndarray:
    """R² of each factor predicted by a ridge regression from the codes, on held-out rows.

    The rows are split at random (``seed``) into a fitting part (``train_fraction``) and a
    held-out part. Codes are standardised with the fitting part's mean and std; the ridge
    penalty is chosen per target by efficient leave-one-out on the fitting part
    (``sklearn.linear_model.RidgeCV``). A continuous factor is one target; a categorical
    factor is one-hot encoded and its R² is the mean over its one-hot columns (each is the
    share of a level's indicator variance explained). R² is not clipped: a code that carries
    nothing scores about 0 and may go slightly negative.

    Args:
        codes: ``[N, D]`` embeddings.
        factors: ``[N, K]`` (or ``[N]``) known factors.
        categorical: per factor (or one bool for all), whether it is categorical.
        seed: seed of the row split.
        train_fraction: share of rows used for fitting.
        alphas: candidate ridge penalties.

    Returns:
        ``[K]`` float64 held-out R² per factor.
    """
    codes = np.asarray(codes, np.float64)
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(
            f"codes must be [N, D] and factors [N, K] with the same N, got {codes.shape} "
            f"and {factors.shape}"
        )
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"codes (shape {codes.shape}) contain NaN or inf")
    k = factors.shape[1]
    cats = [bool(categorical)] * k if isinstance(categorical, bool) else list(categorical)
    if len(cats) != k:
        raise ValueError(f"categorical has {len(cats)} entries for {k} factors")
    n = codes.shape[0]
    n_fit = int(round(train_fraction * n))
    if n_fit < 2 or n - n_fit < 2:
        raise ValueError(f"need at least 2 fitting and 2 held-out rows, got N={n}")
    perm = np.random.default_rng(seed).permutation(n)
    fit, test = perm[:n_fit], perm[n_fit:]
    mean, std = codes[fit].mean(axis=0), codes[fit].std(axis=0)
    x = (codes - mean) / np.where(std > 1e-12, std, 1.0)
    out = np.empty(k)
    for j in range(k):
        y = _targets(factors[:, j], cats[j])
        model = RidgeCV(alphas=np.asarray(alphas), alpha_per_target=True).fit(x[fit], y[fit])
        out[j] = float(np.mean(_r2(y[test], model.predict(x[test]).reshape(len(test), -1))))
    return out
