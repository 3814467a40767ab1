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

`canonical_directions`, `regression_coefficients` and `exclusive_residual` work on
(running) covariance matrices instead of a batch: `exclusive_residual` splits a code x into
its K canonical variates most correlated with a partner code (shared) and the rest
(exclusive), and gives a code u minus its exact least-squares prediction from the exclusive
variates together with x reduced to its exclusive part (docs/disncl.md, "An exclusive MEI
code and the exact residual on it").
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


def _ridged(cov: jax.Array, ridge: float) -> jax.Array:
    """``cov + ridge * mean(diag(cov)) * I``: a ridge relative to the average variance."""
    d = cov.shape[0]
    scale = jnp.maximum(jnp.trace(cov) / d, 1e-12)
    return cov + ridge * scale * jnp.eye(d, dtype=cov.dtype)


def _inv_sqrt(cov: jax.Array, ridge: float) -> jax.Array:
    w, v = jnp.linalg.eigh(_ridged(cov, ridge))
    return (v * jnp.maximum(w, 1e-12) ** -0.5) @ v.T


def canonical_directions(
    cov_a: jax.Array, cov_b: jax.Array, cov_ab: jax.Array, ridge: float = 1e-3
) -> tuple[jax.Array, jax.Array]:
    """Canonical correlation analysis from covariances: ``cov_a`` ``[Ka, Ka]``, ``cov_b``
    ``[Kb, Kb]``, ``cov_ab`` ``[Ka, Kb]`` → (``dirs`` ``[Ka, Ka]``, ``corr`` ``[Ka]``). Column
    j of ``dirs`` is the direction of a's space whose variate ``(a - mean) @ dirs[:, j]`` has
    the j-th largest correlation ``corr[j]`` with a linear function of b (columns beyond Kb
    have correlation 0); the variates are uncorrelated with unit variance under
    ``cov_a + ridge * mean variance * I`` (both covariances get that relative ridge, which
    keeps directions of tiny variance from reaching correlation 1 by chance)."""
    if cov_a.ndim != 2 or cov_b.ndim != 2 or cov_ab.shape != (cov_a.shape[0], cov_b.shape[0]):
        raise ValueError(
            f"canonical_directions needs cov_a [Ka, Ka], cov_b [Kb, Kb], cov_ab [Ka, Kb]; got "
            f"{cov_a.shape}, {cov_b.shape}, {cov_ab.shape}"
        )
    wa, wb = _inv_sqrt(cov_a, ridge), _inv_sqrt(cov_b, ridge)
    left, corr, _ = jnp.linalg.svd(wa @ cov_ab @ wb, full_matrices=True)
    pad = cov_a.shape[0] - corr.shape[0]
    if pad > 0:
        corr = jnp.concatenate([corr, jnp.zeros((pad,), corr.dtype)])
    return wa @ left, corr[: cov_a.shape[0]]


def regression_coefficients(
    cov_in: jax.Array, cov_in_out: jax.Array, ridge: float = 1e-6
) -> jax.Array:
    """``[K, D]`` least-squares coefficients of outputs on inputs from the inputs' covariance
    ``cov_in`` ``[K, K]`` and the cross-covariance ``cov_in_out`` ``[K, D]``:
    ``(cov_in + ridge * mean variance * I)^-1 cov_in_out`` (the ridge only keeps the solve
    defined; at 0 it is ordinary least squares)."""
    if cov_in.ndim != 2 or cov_in_out.shape[0] != cov_in.shape[0]:
        raise ValueError(
            f"regression_coefficients needs cov_in [K, K] and cov_in_out [K, D]; got "
            f"{cov_in.shape}, {cov_in_out.shape}"
        )
    return jnp.linalg.solve(_ridged(cov_in, ridge), cov_in_out)


def exclusive_residual(
    u: jax.Array,
    x: jax.Array,
    *,
    mean_x: jax.Array,
    cov_xx: jax.Array,
    cov_pp: jax.Array,
    cov_xp: jax.Array,
    cov_xu: jax.Array,
    k: int,
    ridge: float = 1e-3,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Make x exclusive of a partner code p, then remove it from u, both exactly (linear,
    under the given moments). ``u`` ``[N, D]``, ``x`` ``[N, Kx]``; ``mean_x`` ``[Kx]`` and the
    covariances ``cov_xx`` ``[Kx, Kx]``, ``cov_pp`` ``[Kp, Kp]``, ``cov_xp`` ``[Kx, Kp]``,
    ``cov_xu`` ``[Kx, D]`` (e.g. running averages); ``0 <= k < Kx``.

    The canonical directions of x against p (`canonical_directions`) are split into the k
    most correlated (shared) and the rest; v = (x - mean_x) @ rest are the exclusive variates.
    Returns (``u - v G``, ``mean_x + v C``, ``corr``): G and C the least-squares coefficients
    of u and of x on v (`regression_coefficients`), so that under the moments the first has
    zero cross-covariance with v (hence with the second, a linear function of v), and the
    second is x's least-squares reconstruction from its exclusive variates, i.e. x without
    its k partner-correlated variates (their correlation with p is gone); ``corr`` ``[Kx]``
    are the canonical correlations. k = 0 removes x's whole span from u; the intercept of
    neither regression is subtracted (as `linear_residual`)."""
    kx = x.shape[-1]
    if not 0 <= k < kx:
        raise ValueError(f"exclusive_residual needs 0 <= k < {kx} (x's width), got k={k}")
    dirs, corr = canonical_directions(cov_xx, cov_pp, cov_xp, ridge)
    rest = dirs[:, k:]
    v = (x - mean_x) @ rest
    cov_vv = rest.T @ cov_xx @ rest
    g = regression_coefficients(cov_vv, rest.T @ cov_xu)
    c = regression_coefficients(cov_vv, rest.T @ cov_xx)
    return linear_residual(u, v, g), mean_x + v @ c, corr


__all__ = [
    "canonical_directions",
    "cross_correlation",
    "exclusive_residual",
    "least_squares_loss",
    "linear_residual",
    "regression_coefficients",
    "residual_cross_covariance",
]
