"""Retrieval by a Gaussian likelihood score, in the im2recipe bag protocol.

The natural iIVAE score of a pair is the conditional prior density of the target's latent,
``log p(g(y) | x) = log N(z; mu(x), diag sigma^2(x))`` with ``z = g(y)_{:d}``. It is not a
cosine similarity, but it is an inner product of two fixed-size feature maps, so the
blockwise rankers of :mod:`jaxmr.metrics.retrieval` apply unchanged:

.. math::
    \\log N(z; \\mu, \\sigma^2) + \\tfrac{d}{2}\\log 2\\pi
      = \\underbrace{[-\\tfrac{1}{2\\sigma^2},\\ \\tfrac{\\mu}{\\sigma^2},\\
        -\\tfrac12 \\textstyle\\sum(\\tfrac{\\mu^2}{\\sigma^2} + \\log\\sigma^2)]}_{a(x)}
        \\cdot \\underbrace{[z^2,\\ z,\\ 1]}_{b(y)}.

Host-side numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxmr.metrics.retrieval import DEFAULT_MAX_BLOCK_ELEMENTS, im2recipe_protocol


def gaussian_score_features(mean: Any, logvar: Any, z: Any) -> tuple[np.ndarray, np.ndarray]:
    """Feature maps whose inner product is the Gaussian log density up to a constant.

    ``a(x_i) . b(y_j) = log N(z_j; mean_i, diag exp(logvar_i)) + (d / 2) log(2 pi)``.

    Args:
        mean: ``[N, d]`` prior means of the query items.
        logvar: ``[N, d]`` prior log variances of the query items.
        z: ``[M, d]`` latents of the target items.

    Returns:
        ``(a [N, 2d + 1], b [M, 2d + 1])`` float64 (the rankers compute the inner products
        in float32 block by block).
    """
    mean = np.asarray(mean, np.float64)
    logvar = np.asarray(logvar, np.float64)
    z = np.asarray(z, np.float64)
    if mean.shape != logvar.shape or mean.ndim != 2 or z.ndim != 2 or z.shape[1] != mean.shape[1]:
        raise ValueError(
            f"expected mean and logvar [N, d] and z [M, d]; got {mean.shape}, {logvar.shape}, "
            f"{z.shape}"
        )
    prec = np.exp(-logvar)
    const = -0.5 * np.sum(mean**2 * prec + logvar, axis=1, keepdims=True)
    a = np.concatenate([-0.5 * prec, mean * prec, const], axis=1)
    b = np.concatenate([z**2, z, np.ones((len(z), 1))], axis=1)
    return a, b


def im2recipe_protocol_dot(
    img_emb: Any,
    rec_emb: Any,
    *,
    bag_size: int = 1000,
    n_bags: int = 10,
    seed: int = 0,
    ks: tuple[int, ...] = (1, 5, 10),
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> dict[str, float]:
    """The im2recipe bag protocol with the raw inner product as the score (no normalisation).

    Same bags as :func:`jaxmr.metrics.retrieval.im2recipe_protocol` for the same ``seed``
    (one ``np.random.default_rng(seed)``, ``choice(N, bag_size, replace=False)`` per bag),
    same rank rule (ties count against the query), same outputs; only the similarity is
    ``img_emb @ rec_emb.T`` instead of the cosine. With L2-normalised inputs the two agree.

    Args:
        img_emb: ``[N, F]`` image-side features; row ``i`` pairs with ``rec_emb[i]``.
        rec_emb: ``[N, F]`` recipe-side features.
        bag_size, n_bags, seed, ks, max_block_elements: as in ``im2recipe_protocol``.

    Returns:
        ``i2r/medR``, ``i2r/R@K``, ``r2i/...`` (means over bags, R@K in percent), each also
        with ``_std``, plus ``bag_size`` and ``n_bags``.
    """
    return im2recipe_protocol(
        img_emb,
        rec_emb,
        bag_size=bag_size,
        n_bags=n_bags,
        seed=seed,
        ks=ks,
        max_block_elements=max_block_elements,
        similarity="dot",
    )
