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
from sklearn.neural_network import MLPRegressor

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


def _rows_split(
    codes: Any, targets: Any, name: str, *, seed: int, train_fraction: float, min_fit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked ``[N, D]`` codes and ``[N, K]`` targets (a 1-D target becomes one column), and
    the seeded random split of their rows into fitting and held-out indices."""
    codes = np.asarray(codes, np.float64)
    targets = np.asarray(targets)
    if targets.ndim == 1:
        targets = targets[:, None]
    if codes.ndim != 2 or targets.ndim != 2 or codes.shape[0] != targets.shape[0]:
        raise ValueError(
            f"codes must be [N, D] and {name} [N, K] with the same N, got {codes.shape} "
            f"and {targets.shape}"
        )
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"codes (shape {codes.shape}) contain NaN or inf")
    n = codes.shape[0]
    n_fit = int(round(train_fraction * n))
    if n_fit < min_fit or n - n_fit < 2:
        raise ValueError(f"need at least {min_fit} fitting and 2 held-out rows, got N={n}")
    perm = np.random.default_rng(seed).permutation(n)
    return codes, targets, perm[:n_fit], perm[n_fit:]


def _standardised(a: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """``a`` scaled by the fitting rows' mean and std (constant columns only centred)."""
    mean, std = a[fit].mean(axis=0), a[fit].std(axis=0)
    return (a - mean) / np.where(std > 1e-12, std, 1.0)


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
    codes, factors, fit, test = _rows_split(
        codes, factors, "factors", seed=seed, train_fraction=train_fraction, min_fit=2
    )
    k = factors.shape[1]
    cats = [bool(categorical)] * k if isinstance(categorical, bool) else list(categorical)
    if len(cats) != k:
        raise ValueError(f"categorical has {len(cats)} entries for {k} factors")
    x = _standardised(codes, fit)
    # One fit for every target column: RidgeCV decomposes the fitting rows once.
    blocks = [_targets(factors[:, j], cats[j]) for j in range(k)]
    y = np.concatenate(blocks, axis=1)
    model = RidgeCV(alphas=np.asarray(alphas), alpha_per_target=True).fit(x[fit], y[fit])
    r2 = _r2(y[test], model.predict(x[test]).reshape(len(test), -1))
    bounds = np.cumsum([0] + [b.shape[1] for b in blocks])
    return np.array([np.mean(r2[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])


def heldout_mlp_r2(
    codes: Any,
    targets: Any,
    *,
    seed: int = 0,
    train_fraction: float = 0.5,
    hidden: int = 256,
    alpha: float = 10.0,
    max_iter: int = 300,
) -> np.ndarray:
    """R² of each continuous target column predicted by a one-hidden-layer MLP from the codes,
    on held-out rows: the nonlinear counterpart of ``heldout_r2`` (same row split for the same
    ``seed``, inputs standardised with the fitting part's statistics, targets too).

    One ``sklearn.neural_network.MLPRegressor`` (ReLU, ``hidden`` units, L2 penalty ``alpha``,
    Adam) predicts every column; it stops early on a 15% validation share of the fitting rows,
    so the held-out rows never choose anything. Not clipped, like ``heldout_r2``.

    Returns:
        ``[K]`` float64 held-out R² per target column.
    """
    codes, targets, fit, test = _rows_split(
        codes, targets, "targets", seed=seed, train_fraction=train_fraction, min_fit=20
    )
    targets = targets.astype(np.float64)
    if not np.all(np.isfinite(targets)):
        raise ValueError(f"targets (shape {targets.shape}) contain NaN or inf")
    x, y = _standardised(codes, fit), _standardised(targets, fit)
    model = MLPRegressor(
        hidden_layer_sizes=(hidden,),
        alpha=alpha,
        max_iter=max_iter,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        random_state=seed,
    )
    model.fit(x[fit], y[fit] if y.shape[1] > 1 else y[fit, 0])
    pred = model.predict(x[test]).reshape(len(test), -1)
    return _r2(y[test], pred)
