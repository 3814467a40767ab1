r"""Jacobian terms as pure functions.

Notation: `f: R^D -> R^d` acts on ONE example (a 1-D array); batch versions `vmap` over a
leading axis. `J = df/dx` is `[d, D]`. Functions of formed Jacobians accept any leading batch
axes (`[..., d, D]`) and return one value per Jacobian; `lipschitz_hinge_penalty` takes the
spectral norms of K branches per example, `[B, K]`, and returns `[B]`.

Cost per example (one "pass" = one forward-mode JVP or reverse-mode VJP of f):

| function                          | cost                                   |
|-----------------------------------|----------------------------------------|
| `example_jacobian(mode="fwd")`    | D JVPs (`jax.jacfwd`)                  |
| `example_jacobian(mode="rev")`    | d VJPs (`jax.jacrev`)                  |
| `example_jacobian(mode="vjp")`    | d VJPs, vmapped over `eye(d)`          |
| `spectral_norm` (exact)           | Jacobian + eigvalsh of a min(d,D)^2 Gram matrix |
| `spectral_norm_power`             | n_iter JVP + VJP pairs, J never formed |
| `log_abs_det_identity_plus`       | Jacobian + LU (slogdet) of D x D       |
| `logdet_power_series`             | n_terms VJPs per probe                 |
| `orthogonality_penalty` exact     | Jacobian + d x d product               |
| `orthogonality_penalty_probe`     | 2 VJPs per probe pair                  |
| `half_logdet_jjt`                 | Jacobian + d x d Cholesky              |

For d << D reverse mode is the cheap side (d passes instead of D), hence `mode="auto"` picks
`fwd` only when D <= d. docs/jacobians.md has the maths, the costs and measured timings.

The exact spectral norm uses `eigvalsh` of the smaller Gram matrix rather than an SVD: an
SVD-based `norm(J, 2)` of 20 x 20 per-example Jacobians inside a vmapped, differentiated,
jitted step was seen to hang on CPU with jax 0.10.2 (docs/methods.md §1, docs/ivae.md §2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Fn = Callable[[jax.Array], jax.Array]

JACOBIAN_MODES = ("auto", "fwd", "rev", "vjp")


def example_jacobian(
    f: Fn, x: jax.Array, *, mode: str = "auto", out_dim: int | None = None
) -> jax.Array:
    """Jacobian of `f` at one example `x` (`batched_jacobian` does a batch).

    Args:
      f: map from `[D]` to `[d]`.
      x: `[D]` input.
      mode: `fwd` (`jax.jacfwd`), `rev` (`jax.jacrev`), `vjp` (d VJPs vmapped over the rows of
        `eye(d)`), or `auto`: `fwd` when D <= d, else `rev`.
      out_dim: d, needed only to decide `auto` without tracing f (inferred otherwise).

    Returns:
      `[d, D]` Jacobian.
    """
    if mode not in JACOBIAN_MODES:
        raise ValueError(f"jacobian mode must be one of {JACOBIAN_MODES}, got {mode!r}")
    if mode == "auto":
        d = out_dim if out_dim is not None else jax.eval_shape(f, x).shape[0]
        mode = "fwd" if x.shape[0] <= d else "rev"
    if mode == "fwd":
        return jax.jacfwd(f)(x)
    if mode == "rev":
        return jax.jacrev(f)(x)
    y, pullback = jax.vjp(f, x)
    (rows,) = jax.vmap(pullback)(jnp.eye(y.shape[0], dtype=y.dtype))
    return rows


def batched_jacobian(f: Fn, xs: jax.Array, *, mode: str = "auto") -> jax.Array:
    """Per-example Jacobians `[B, d, D]` of `f` at the rows of `xs` `[B, D]`."""
    return jax.vmap(lambda x: example_jacobian(f, x, mode=mode))(xs)


def mlp_jacobian_transposed(kernels: Sequence[jax.Array], slopes: Sequence[jax.Array]):
    r"""Per-example Jacobians of MLPs, transposed, from their weights and activation slopes.

    For h(x) = W_L^T act(... act(W_1^T x + b_1) ...) + b_L (`jaxmr.models.ivae.MLP`, weights
    `[in, out]`),

        J_h(x)^T = W_1 diag(s_1) W_2 diag(s_2) ... diag(s_{L-1}) W_L,   s_l = act'(a_l),

    formed left to right: W_1 scaled per example, then one matmul per layer with the shared
    weights, whose rows are all examples' `in` rows together. The cost is that of `in`
    forward-mode JVPs without the first layer's identity-tangent matmul; the slopes come from
    the forward pass (`MLP.forward_with_slopes`), so h is not evaluated again.

    Leading axes are shared: with the weights of K blocks stacked, `[K, in, out]`, and their
    slopes `[K, B, width]`, the result is `[K, B, in, out]` from one batched matmul per layer.

    Args:
      kernels: L >= 2 weight matrices `[..., in_l, out_l]` (leading axes: e.g. blocks).
      slopes: L - 1 slope arrays `[..., B, out_l]` for the hidden layers.

    Returns:
      `[..., B, in, out]`: J^T per example (J = dh/dx is `[out, in]`).
    """
    if len(slopes) != len(kernels) - 1:
        raise ValueError(
            f"mlp_jacobian_transposed: {len(kernels)} weight matrices need "
            f"{len(kernels) - 1} slope arrays, got {len(slopes)}"
        )
    if not slopes:
        raise ValueError("mlp_jacobian_transposed: an MLP without hidden layers is linear")
    t = kernels[0][..., None, :, :] * slopes[0][..., :, None, :]  # [..., B, in, h_1]
    for kernel, slope in zip(kernels[1:-1], slopes[1:], strict=True):
        t = jnp.einsum("...bih,...hg->...big", t, kernel) * slope[..., :, None, :]
    return jnp.einsum("...bih,...ho->...bio", t, kernels[-1])


def spectral_norm(jac: jax.Array) -> jax.Array:
    """Exact largest singular value of `jac` `[..., d, D]`: sqrt(max eig(J J^T or J^T J))."""
    d, dd = jac.shape[-2:]
    gram = jac @ jnp.swapaxes(jac, -1, -2) if d <= dd else jnp.swapaxes(jac, -1, -2) @ jac
    return jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(gram)[..., -1], 0.0))


def spectral_norm_power(
    f: Fn, x: jax.Array, key: jax.Array, *, n_iter: int = 8, v0: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    r"""Spectral norm of J_f(x) by power iteration on JVP/VJP pairs, without forming J.

    v <- J^T J v / ||J^T J v|| for `n_iter` steps from a random start, then sigma = ||J v||.
    The iterate is held fixed (stop-gradient), so the gradient of sigma is that of
    ||J v*||, the usual estimator (Miyato et al. 2018; Behrmann et al. 2019). The estimate is a
    lower bound that converges at rate (sigma_2 / sigma_1)^(2 n_iter).

    Args:
      f: map `[D] -> [d]`; x: `[D]`; key: PRNG key for the start vector (ignored if `v0`).
      n_iter: power-iteration steps; v0: optional warm-start vector `[D]`.

    Returns:
      (sigma, v): the estimate and the final right singular vector (to warm-start next call).
    """
    v = jax.random.normal(key, x.shape, x.dtype) if v0 is None else v0
    _, pullback = jax.vjp(f, x)

    def body(_, v):
        v = v / (jnp.linalg.norm(v) + 1e-12)
        u = jax.jvp(f, (x,), (v,))[1]
        (w,) = pullback(u)
        return w

    v = jax.lax.fori_loop(0, n_iter, body, v)
    v = jax.lax.stop_gradient(v / (jnp.linalg.norm(v) + 1e-12))
    sigma = jnp.linalg.norm(jax.jvp(f, (x,), (v,))[1])
    return sigma, v


def log_abs_det(jac: jax.Array) -> jax.Array:
    """log |det J| of square `[..., D, D]` Jacobians (LU via slogdet)."""
    return jnp.linalg.slogdet(jac)[1]


def log_abs_det_identity_plus(jac: jax.Array) -> jax.Array:
    """log |det(I + J)| of square `[..., D, D]` Jacobians of a residual branch, exactly."""
    eye = jnp.eye(jac.shape[-1], dtype=jac.dtype)
    return jnp.linalg.slogdet(eye + jac)[1]


def logdet_power_series(
    h: Fn, x: jax.Array, key: jax.Array, *, n_terms: int = 8, n_probes: int = 1
) -> jax.Array:
    r"""Unbiased-per-term estimate of log det(I + J_h(x)) by the i-ResNet power series.

        log det(I + J) = sum_{k>=1} (-1)^{k+1} tr(J^k) / k,   valid when ||J||_2 < 1,
        tr(J^k) ~= v^T J^k v with Hutchinson probes v ~ N(0, I).

    Each term costs one VJP per probe ((J^T)^k v is built by repeated VJPs). The truncation
    after `n_terms` biases the estimate by at most sum_{k>n} ||J||^k / k (Behrmann et al. 2019).

    Args:
      h: residual branch `[D] -> [D]`; x: `[D]`; key: probe key.
      n_terms: number of series terms; n_probes: Hutchinson probes (averaged).

    Returns:
      scalar estimate.

    References:
      Behrmann et al., "Invertible Residual Networks", ICML 2019.
    """
    _, pullback = jax.vjp(h, x)
    probes = jax.random.normal(key, (n_probes,) + x.shape, x.dtype)

    def one_probe(v):
        def body(k, carry):
            w, total = carry
            (w,) = pullback(w)
            sign = jnp.where(k % 2 == 0, 1.0, -1.0)
            return w, total + sign * jnp.vdot(w, v) / (k + 1)

        _, total = jax.lax.fori_loop(0, n_terms, body, (v, jnp.zeros((), x.dtype)))
        return total

    return jnp.mean(jax.vmap(one_probe)(probes))


def orthogonality_penalty(jac: jax.Array) -> jax.Array:
    """Exact ||J J^T - I||_F^2 of `[..., d, D]` Jacobians."""
    d = jac.shape[-2]
    a = jac @ jnp.swapaxes(jac, -1, -2) - jnp.eye(d, dtype=jac.dtype)
    return jnp.sum(a**2, axis=(-2, -1))


def orthogonality_penalty_probe(
    f: Fn, x: jax.Array, key: jax.Array, *, n_probes: int = 4
) -> jax.Array:
    r"""Unbiased random-probe estimate of ||J J^T - I||_F^2 at one example.

    With A = J J^T - I (symmetric, d x d) and independent u, v ~ N(0, I_d),
    E[(u^T A v)^2] = E[v^T A^T u u^T A v] = tr(A^T A) = ||A||_F^2, and
    u^T A v = <J^T u, J^T v> - <u, v> costs two VJPs. Averaged over `n_probes` pairs.
    """
    y, pullback = jax.vjp(f, x)
    ku, kv = jax.random.split(key)
    u = jax.random.normal(ku, (n_probes,) + y.shape, y.dtype)
    v = jax.random.normal(kv, (n_probes,) + y.shape, y.dtype)
    (ju,) = jax.vmap(pullback)(u)
    (jv,) = jax.vmap(pullback)(v)
    uav = jnp.sum(ju * jv, axis=-1) - jnp.sum(u * v, axis=-1)
    return jnp.mean(uav**2)


def isometry_probe_penalty(f: Fn, x: jax.Array, key: jax.Array, *, n_probes: int = 4) -> jax.Array:
    r"""One-probe isometry penalty (||J^T v||^2 - ||v||^2)^2, v ~ N(0, I_d), averaged.

    Its expectation is 2 ||A||_F^2 + (tr A)^2 with A = J J^T - I: not an estimate of
    ||A||_F^2, but zero iff A = 0, so a valid penalty at ONE VJP per probe (docs/methods.md §1).
    """
    y, pullback = jax.vjp(f, x)
    v = jax.random.normal(key, (n_probes,) + y.shape, y.dtype)
    (jv,) = jax.vmap(pullback)(v)
    return jnp.mean((jnp.sum(jv**2, -1) - jnp.sum(v**2, -1)) ** 2)


def frobenius_norm_sq_probe(f: Fn, x: jax.Array, key: jax.Array, *, n_probes: int = 1):
    """Hutchinson estimate of ||J||_F^2 = E ||J^T v||^2, v ~ N(0, I_d) (Hoffman et al. 2019)."""
    y, pullback = jax.vjp(f, x)
    v = jax.random.normal(key, (n_probes,) + y.shape, y.dtype)
    (jv,) = jax.vmap(pullback)(v)
    return jnp.mean(jnp.sum(jv**2, -1))


def half_logdet_jjt(jac: jax.Array) -> jax.Array:
    """½ log det(J J^T) of `[..., d, D]` Jacobians (d <= D) via Cholesky: the injective-flow
    volume term. J J^T must be positive definite (J of full row rank)."""
    gram = jac @ jnp.swapaxes(jac, -1, -2)
    chol = jnp.linalg.cholesky(gram)
    return jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def subbatch(xs: jax.Array, key: jax.Array, size: int) -> jax.Array:
    """A random sub-batch of `size` rows of `xs` (without replacement), for exact Jacobian
    terms at a fraction of the cost: an unbiased estimate of the batch mean of any per-example
    term."""
    if size >= xs.shape[0]:
        return xs
    idx = jax.random.choice(key, xs.shape[0], (size,), replace=False)
    return xs[idx]


def lipschitz_hinge_penalty(sigmas: jax.Array, *, bound: float) -> jax.Array:
    r"""Per-example Lipschitz hinge penalty sum_k relu(sigma_k - c)^2, c = `bound`.

    Keeps every residual branch's spectral norm ||J_{h_k}||_2 below c (the invertibility
    condition of the residual flow, docs/methods.md §1).

    Args:
      sigmas: `[B, K]` spectral norms of K branches for each of B examples (more leading
        axes are allowed: `[..., B, K]`). For ONE map per example pass `sigmas[:, None]`.
      bound: c, the target bound (c < 1 for invertibility).

    Returns:
      `[B]` (resp. `[..., B]`): the penalty of each example, summed over its K branches.

    Raises:
      ValueError: for a 0-d or 1-d `sigmas`, whose branch axis would be ambiguous (a `[B]`
        vector of one map's norms would otherwise be summed over the batch).
    """
    if jnp.ndim(sigmas) < 2:
        raise ValueError(
            f"sigmas must be [B, K] (K branch norms per example), got shape {jnp.shape(sigmas)}"
            "; for one map per example pass sigmas[:, None]"
        )
    return jnp.sum(jax.nn.relu(sigmas - bound) ** 2, axis=-1)
