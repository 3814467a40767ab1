r"""Change-of-variables likelihoods for the implicit decoder (docs/methods.md §1, [R]).

The target-modality embedding g is invertible, so the decoder f := g^{-1} is never built and
the likelihood of y given the query x is exact:

    log p(y | x) = log p(g(y) | x) + log |det J_g(y)|.

For g = (I + h_K) o ... o (I + h_1), log |det J_g| = sum_k log |det(I + J_{h_k}(y_k))|.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxmr.losses import jacobian as jac_lib
from jaxmr.losses import lapack_free
from jaxmr.losses.vae import gaussian_log_prob

LOGDETS = ("exact", "series", "none")
SPECTRALS = ("exact", "power", "none")


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


def residual_flow_jacobian_terms(
    blocks: Sequence[tuple[Callable[[jax.Array], jax.Array], jax.Array, jax.Array]],
    key: jax.Array,
    *,
    linear_log_det: jax.Array | float = 0.0,
    logdet: str = "exact",
    spectral: str = "exact",
    jacobian_mode: str = "auto",
    power_iters: int = 8,
    series_terms: int = 8,
    probes: int = 1,
) -> tuple[jax.Array, jax.Array]:
    """log |det J_g(y)| and every branch's Jacobian spectral norm for a residual flow

        g = A_K o (I + h_K) o ... o A_1 o (I + h_1) o W,
        log |det J_g| = log |det W| + sum_k [log |det(I + J_{h_k}(y_k))| + log |det A_k|],

    from the blocks a flow's forward pass recorded (`ResidualFlow.forward_with_blocks`).

    Args:
      blocks: one `(h_k, y_k, a_k)` or `(h_k, y_k, a_k, s_k)` per block: the residual branch
        h_k (`[D] -> [D]`, applied per example), its input y_k `[B, D]`, the block's affine
        log det a_k (scalar), and optionally the branch's activation slopes s_k at y_k from
        the flow's pass (recomputed by `h_k.forward_with_slopes` when absent).
      key: PRNG key for power-iteration starts and Hutchinson probes.
      linear_log_det: log |det W| of the flow's first linear layer (scalar).
      logdet: `exact` (LU of I + J_h, `lapack_free.log_abs_det_identity_plus`), `series`
        (power series + Hutchinson, `logdet_power_series`), or `none` (skip the branches'
        log dets, e.g. for the injective-flow form; a_k and log |det W| are still added).
      spectral: `exact` (formed J, `lapack_free.spectral_norm_gram`: 1,024 power steps on
        J^T J by repeated squaring), `power` (JVP/VJP power iteration, J never formed), or
        `none` (no norms: sigmas is `[B, 0]`).
      jacobian_mode: how the exact terms' per-example Jacobians are formed: `auto`, for
        branches with `kernels()` and `forward_with_slopes` (`jaxmr.models.ivae.MLP` with a
        hidden layer), from their weights and activation slopes
        (`jac_lib.mlp_jacobian_transposed`, all blocks in one batched matmul per layer);
        otherwise, and for `fwd`/`rev`/`vjp`, by autodiff per block (`batched_jacobian`).
      power_iters, series_terms, probes: sizes of the `power` and `series` estimators.

    Returns:
      (log_det `[B]`, sigmas `[B, K]`).
    """
    if logdet not in LOGDETS or spectral not in SPECTRALS:
        raise ValueError(
            f"logdet must be exact|series|none and spectral exact|power|none, got "
            f"{logdet!r}, {spectral!r}"
        )
    b = blocks[0][1].shape[0]
    # Summed in the order of the forward pass (log |det W|, then per block the branch's
    # estimated term and the affine term, then all exact branch terms at once).
    total = jnp.zeros((b,), blocks[0][1].dtype) + linear_log_det
    sigmas = []
    keys = jax.random.split(key, (len(blocks), 2))
    need_jac = logdet == "exact" or spectral == "exact"
    analytic = need_jac and jacobian_mode == "auto" and all(_has_slopes(b[0]) for b in blocks)
    jacs, kernels, slopes = [], [], []  # exact terms of all blocks: together after the pass
    for k, (h, y, affine_log_det, *recorded) in enumerate(blocks):
        if analytic:
            kernels.append(h.kernels())
            slopes.append(recorded[0] if recorded else h.forward_with_slopes(y)[1])
        elif need_jac:
            jacs.append(jac_lib.batched_jacobian(h, y, mode=jacobian_mode))
        if logdet == "series":
            ks = jax.random.split(keys[k, 0], b)
            total = total + jax.vmap(
                lambda v, kk, h=h: jac_lib.logdet_power_series(
                    h, v, kk, n_terms=series_terms, n_probes=probes
                )
            )(y, ks)
        if spectral == "power":
            ks = jax.random.split(keys[k, 1], b)
            sigmas.append(
                jax.vmap(
                    lambda v, kk, h=h: jac_lib.spectral_norm_power(h, v, kk, n_iter=power_iters)[0]
                )(y, ks)
            )
        total = total + affine_log_det
    if need_jac:
        # Exact terms in plain XLA ops (batched LAPACK calls of several blocks at once
        # deadlock XLA:CPU's thread pool at D >= 10, see jaxmr.losses.lapack_free), on all
        # blocks' Jacobians at once: [K, B, D, D] makes one set of fused ops, not K.
        if analytic:
            # J^T: det(I + J^T) = det(I + J) and ||J^T||_2 = ||J||_2, so the terms take it as
            # it comes.
            jac = jac_lib.mlp_jacobian_transposed(
                [jnp.stack(layer) for layer in zip(*kernels, strict=True)],
                [jnp.stack(layer) for layer in zip(*slopes, strict=True)],
            )
        else:
            jac = jnp.stack(jacs)
        if logdet == "exact":
            total = total + jnp.sum(lapack_free.log_abs_det_identity_plus(jac), axis=0)
        if spectral == "exact":
            return total, jnp.moveaxis(lapack_free.spectral_norm_gram(jac), 0, -1)
    if spectral == "none":
        return total, jnp.zeros((b, 0), total.dtype)
    return total, jnp.stack(sigmas, axis=-1)


def _has_slopes(h) -> bool:
    """Whether a branch can give its Jacobian from weights and slopes (an MLP with a hidden
    layer)."""
    return (
        hasattr(h, "forward_with_slopes")
        and hasattr(h, "kernels")
        and getattr(h, "num_layers", 0) > 1
    )
