"""NCR's clean/noisy split: a 2-component GMM on per-sample losses.

Each epoch NCR computes every training pair's loss, min-max normalises the losses, fits a
two-component 1-D Gaussian mixture (sklearn, `max_iter=10, tol=1e-2, reg_covar=5e-4`) and
takes the posterior of the component with the smaller mean as the pair's clean probability;
pairs with probability > 0.5 form the clean ("labeled") set. Memorisation makes noisy pairs
keep larger losses early in training, which is what the mixture separates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture


def gmm_clean_probability(
    losses: np.ndarray,
    *,
    max_iter: int = 10,
    tol: float = 1e-2,
    reg_covar: float = 5e-4,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Clean probability of each pair from its loss.

    Args:
      losses: [N] per-sample losses (larger = less likely clean).
      max_iter, tol, reg_covar: the mixture's settings (NCR's defaults).
      seed: the mixture's random state (its k-means initialisation).

    Returns:
      (prob [N] in [0, 1], info) with info = {"means": [2] component means on the normalised
      scale, low first; "weights": [2] mixture weights, low-mean component first}.

    References:
      Huang et al., "Learning with Noisy Correspondence for Cross-modal Matching" (NCR),
      NeurIPS 2021.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    if x.size < 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"need >= 2 finite losses for the GMM split, got shape {x.shape}")
    span = x.max() - x.min()
    x = (x - x.min()) / (span if span > 0 else 1.0)
    gmm = GaussianMixture(
        n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar, random_state=seed
    )
    gmm.fit(x[:, None])
    post = gmm.predict_proba(x[:, None])
    means = gmm.means_.ravel()
    low = int(np.argmin(means))
    order = [low, 1 - low]
    return post[:, low], {"means": means[order], "weights": gmm.weights_[order]}
