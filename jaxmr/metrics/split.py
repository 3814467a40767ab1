"""Quality of a clean/noisy split of training pairs against the injected truth.

Noisy-correspondence methods (NCR and its successors) split the training pairs each epoch
into a predicted clean set and a predicted noisy set, usually by thresholding a clean
probability (NCR: the posterior of the low-loss component of a 2-component GMM, clean if
``> 0.5``). With injected noise the truth is known (``jaxmr.data.noise``), so the split can
be scored: the *positive class is "clean"* throughout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["split_quality"]


def split_quality(
    is_clean: Any,
    *,
    clean_prob: Any | None = None,
    predicted_clean: Any | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """AUC, precision, recall and F1 of a predicted clean set against the true clean pairs.

    Args:
        is_clean: ``[N]`` bool truth (``~NoisyPairing.is_noisy``).
        clean_prob: ``[N]`` predicted probability (or any score, higher = cleaner) that a
            pair is clean; gives ``auc`` and, thresholded ``> threshold``, the clean set.
        predicted_clean: ``[N]`` bool predicted clean set (instead of, or overriding, the
            thresholded ``clean_prob``).
        threshold: clean if ``clean_prob > threshold`` (NCR's ``p_threshold``).

    Returns:
        dict with ``auc`` (ROC AUC of ``clean_prob`` for the clean class; ``nan`` without
        ``clean_prob`` or when the truth holds one class only, e.g. 0% noise),
        ``precision`` (share of predicted-clean pairs that are clean), ``recall`` (share of
        clean pairs predicted clean), ``f1``, ``accuracy``, ``predicted_clean_fraction``
        and ``true_clean_fraction``. Precision is ``nan`` when nothing is predicted clean.
    """
    truth = np.asarray(is_clean)
    if truth.ndim != 1 or truth.dtype != bool:
        raise ValueError(f"is_clean must be a 1-D bool array, got {truth.dtype} {truth.shape}")
    n = len(truth)
    if n == 0:
        raise ValueError("split_quality needs at least one pair")
    if clean_prob is None and predicted_clean is None:
        raise ValueError("pass clean_prob, predicted_clean, or both")
    auc = float("nan")
    if clean_prob is not None:
        prob = np.asarray(clean_prob, dtype=np.float64)
        if prob.shape != truth.shape:
            raise ValueError(f"clean_prob shape {prob.shape} != is_clean shape {truth.shape}")
        if not np.all(np.isfinite(prob)):
            raise ValueError("clean_prob contains NaN or inf")
        if 0 < truth.sum() < n:
            auc = float(roc_auc_score(truth, prob))
    if predicted_clean is not None:
        pred = np.asarray(predicted_clean)
        if pred.shape != truth.shape or pred.dtype != bool:
            raise ValueError(
                f"predicted_clean must be bool of shape {truth.shape}, got {pred.dtype} "
                f"{pred.shape}"
            )
    else:
        pred = prob > threshold
    tp = float(np.sum(pred & truth))
    n_pred, n_true = float(pred.sum()), float(truth.sum())
    precision = tp / n_pred if n_pred else float("nan")
    recall = tp / n_true if n_true else float("nan")
    f1 = 2 * tp / (n_pred + n_true) if n_pred + n_true else float("nan")
    return {
        "auc": auc,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float(np.mean(pred == truth)),
        "predicted_clean_fraction": n_pred / n,
        "true_clean_fraction": n_true / n,
    }
