r"""Change-of-variables likelihoods for the implicit decoder (docs/methods.md §1, [R]).

The target-modality embedding g is invertible, so the decoder f := g^{-1} is never built and
the likelihood of y given the query x is exact:

    log p(y | x) = log p(g(y) | x) + log |det J_g(y)|.

For g = (I + h_K) o ... o (I + h_1), log |det J_g| = sum_k log |det(I + J_{h_k}(y_k))|.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmr.losses.vae import gaussian_log_prob


def change_of_variables_log_likelihood(
    z: jax.Array,
    log_det_jacobian: jax.Array,
    prior_mean: jax.Array,
    prior_logvar: jax.Array,
) -> jax.Array:
    """log p(y|x) = log N(z; mu(x), diag sigma^2(x)) + log|det J_g(y)| with z = g(y).

    Args:
      z: `[B, d]` embeddings g(y); log_det_jacobian: `[B]`.
      prior_mean, prior_logvar: `[B, d]` conditional prior parameters.

    Returns:
      `[B]` log-likelihoods.
    """
    return gaussian_log_prob(z, prior_mean, prior_logvar) + log_det_jacobian


def injective_flow_log_likelihood(
    z: jax.Array,
    half_logdet_jjt: jax.Array,
    prior_mean: jax.Array,
    prior_logvar: jax.Array,
) -> jax.Array:
    """Injective-flow form for g: R^D -> R^d, D > d (docs/methods.md §1 candidate (ii)):

        log p(g(y)|x) + ½ log det(J_g J_g^T).

    The volume term is that of g restricted to the data manifold (Caterini et al. 2021).
    """
    return gaussian_log_prob(z, prior_mean, prior_logvar) + half_logdet_jjt


def isotropic_log_prob(r: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(r; 0, diag exp(logvar)): density of the D - d extra outputs of a full-dimensional
    flow (docs/methods.md §1 candidate (i))."""
    return gaussian_log_prob(r, jnp.zeros_like(r), jnp.broadcast_to(logvar, r.shape))
