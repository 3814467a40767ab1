"""Exact linear decorrelation of one code from another by a fitted regression.

A ridge probe's R² and a linear-Gaussian MI estimate are invariant to the scale of a
direction: shrinking the part of a code `u` that a second code `x` predicts lowers neither,
only removing it does. The residual `u - x B` with B the least-squares coefficients of `u` on
`x` (with an intercept) has zero covariance with every linear function of `x` — the
closed-form minimiser of the Gaussian I(u - xB; x) over B — whatever the scales.

`linear_residual` forms the residual with given coefficients; `least_squares_loss` is the
objective whose minimiser over (coef, intercept) is that regression, so coefficients trained
on it (on stop-gradient codes) track the regression while the codes change.
`residual_cross_covariance` measures what is left. `cross_correlation` is the (weighted)
Pearson cross-correlation of two codes' dimensions: scale-free per dimension, the quantity a
penalty must drive to zero to make one code carry nothing linear of another. The same
least-squares fit of one modality's code on the other's (over clean pairs) gives each
modality's linear prediction of its partner, whose least-squares coefficients on directions
uncorrelated with the partner (exclusive content) are zero. docs/disncl.md ("Exact linear
decorrelation") says how DisNCL uses them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def linear_residual(u: jax.Array, x: jax.Array, coef: jax.Array) -> jax.Array:
    """``u - x @ coef``: ``[N, D]`` codes ``u``, ``[N, K]`` predictors ``x``, ``[K, D]``
    coefficients → ``[N, D]``. The intercept of the regression is *not* subtracted (it is a
    constant shift; leaving it keeps the residual's mean where ``u``'s is)."""
    if u.ndim != 2 or x.ndim != 2 or coef.shape != (x.shape[1], u.shape[1]):
        raise ValueError(
            f"linear_residual needs u [N, D], x [N, K], coef [K, D]; got u {u.shape}, "
            f"x {x.shape}, coef {coef.shape}"
        )
    return u - x @ coef


def least_squares_loss(
    target: jax.Array,
    inputs: jax.Array,
    coef: jax.Array,
    intercept: jax.Array,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Mean over rows of the squared error ``||target - inputs @ coef - intercept||²``
    (summed over the ``D`` target columns). ``target`` ``[N, D]``, ``inputs`` ``[N, K]``,
    ``coef`` ``[K, D]``, ``intercept`` ``[D]`` → scalar. Its minimiser is ordinary least
    squares with an intercept; pass stop-gradient codes to fit only the coefficients.
    ``weights`` ``[N]`` (optional, e.g. clean probabilities): the weighted mean
    ``sum_i w_i err_i / max(sum_i w_i, 1e-8)`` instead, whose minimiser is weighted least
    squares."""
    if coef.shape != (inputs.shape[-1], target.shape[-1]) or intercept.shape != (target.shape[-1],):
        raise ValueError(
            f"least_squares_loss needs coef [K, D] and intercept [D] for target [N, D] and "
            f"inputs [N, K]; got target {target.shape}, inputs {inputs.shape}, coef "
            f"{coef.shape}, intercept {intercept.shape}"
        )
    per = jnp.sum((target - inputs @ coef - intercept) ** 2, axis=-1)
    if weights is None:
        return jnp.mean(per)
    return jnp.sum(weights * per) / jnp.maximum(jnp.sum(weights), 1e-8)


def residual_cross_covariance(r: jax.Array, x: jax.Array) -> jax.Array:
    """``[D, K]`` sample cross-covariance (1/N) of the columns of ``r`` ``[N, D]`` and ``x``
    ``[N, K]``: zero exactly when ``r`` is the least-squares residual of some ``u`` on ``x``
    (with an intercept) over these rows."""
    rc = r - jnp.mean(r, axis=0)
    xc = x - jnp.mean(x, axis=0)
    return rc.T @ xc / r.shape[0]


def cross_correlation(
    a: jax.Array, b: jax.Array, weights: jax.Array | None = None, eps: float = 1e-8
) -> jax.Array:
    """``[Ka, Kb]`` Pearson correlations of the columns of ``a`` ``[N, Ka]`` and ``b``
    ``[N, Kb]`` over the rows, each row weighted by ``weights`` ``[N]`` (optional; integer
    weights give the correlation of the rows repeated that many times). Invariant to each
    column's scale and shift; ``eps`` keeps a constant column at correlation 0."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"cross_correlation needs a [N, Ka] and b [N, Kb] with the same N; got a "
            f"{a.shape}, b {b.shape}"
        )
    if weights is None:
        weights = jnp.ones((a.shape[0],), a.dtype)
    if weights.shape != (a.shape[0],):
        raise ValueError(f"cross_correlation: weights must be [{a.shape[0]}], got {weights.shape}")
    p = weights / jnp.maximum(jnp.sum(weights), eps)
    ac = a - p @ a
    bc = b - p @ b
    cov = (ac * p[:, None]).T @ bc
    sa = jnp.sqrt(p @ (ac * ac) + eps)
    sb = jnp.sqrt(p @ (bc * bc) + eps)
    return cov / (sa[:, None] * sb[None, :])


__all__ = [
    "cross_correlation",
    "least_squares_loss",
    "linear_residual",
    "residual_cross_covariance",
]
