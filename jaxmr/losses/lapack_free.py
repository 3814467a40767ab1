r"""Exact Jacobian terms of small matrices in plain XLA ops, without LAPACK custom calls.

Why: with jax 0.10.2 on a 2-core CPU, a jitted training step holding several *batched*
LAPACK calls (`slogdet` -> getrf, `eigvalsh` -> syevd, `cholesky` -> potrf) on
per-example 10 x 10 or 20 x 20 Jacobians hangs at random with no CPU use. A native stack
(gdb) of the wedged process shows the cause: jaxlib's LAPACK FFI kernels split the batch
with `jax::ParallelBatchMap` over XLA:CPU's intra-op thread pool and block a pool thread in
`BlockingCounter::Wait`; the residual blocks' independent calls run concurrently, every
pool thread ends up waiting for sub-tasks queued behind another waiting thread, and the
step never finishes (`--xla_cpu_multi_thread_eigen=false` and
`--xla_cpu_use_xnnpack=false` did not prevent it). At D = 5 the kernels run inline and
the step is fine, which is why the default job never hit it.

The functions here compute the same quantities with batched element-wise ops, matmuls and
`fori_loop`s, so the step has no custom call to wedge. They are exact up to float rounding
(`log_abs_det`, `half_logdet_gram`) or up to a power iteration converged far below float
precision in all but near-degenerate cases (`spectral_norm_gram`). Cost is O(n^3) per
matrix like LAPACK; they are meant for n up to a few dozen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Up to this size matrices are handled as small: products as broadcast-multiply-reduce (one
# fused element-wise loop instead of a batched `dot_general` per product) and the LU
# unrolled in Python instead of a `fori_loop`. At the default shapes (256 examples x 6
# blocks of 5 x 5 Jacobians) the step is dominated by the fixed cost of many tiny batched
# ops, so fewer, fused ops are what makes it fast (bench/jacobian_cost.py, docs/performance.md).
SMALL = 8

# Above `SMALL` and up to this size the LU is still unrolled, but on a batch-last layout
# `[n, n, batch]` with the active block shrinking each column (`_log_abs_det_batch_last`):
# every op is then a vectorised element-wise loop over the batch, where the `fori_loop`
# over `[batch, n, n]` costs a while-loop trip and badly vectorised n-wide rows per column.
# Measured on 6 x 256 per-example Jacobians (bench/exact_terms.py, docs/performance.md):
# value-and-gradient 5.2x faster than the `fori_loop` at n = 10, 1.4x at n = 16. Beyond it the
# `fori_loop` keeps compile time bounded (the unrolled form compiles in ~1 s per column).
UNROLL_MAX = 16


def small_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a @ b` for batched `[..., n, m] @ [..., m, k]`; element-wise multiply-reduce when
    every side is at most `SMALL` (XLA fuses it into one loop), a `dot_general` otherwise."""
    if max(a.shape[-2:] + b.shape[-1:]) <= SMALL:
        return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)
    return a @ b


def log_abs_det(a: jax.Array) -> jax.Array:
    r"""log |det A| of `[..., n, n]` matrices by LU with partial pivoting.

    At column k the row with the largest |a_ik| (i >= k) is swapped into place, the pivot's
    log-magnitude is accumulated and the rows below are eliminated; log |det A| =
    sum_k log |u_kk| (row swaps only flip the sign). Differentiable almost everywhere (the
    pivot choice is piecewise constant). For n <= `SMALL` the column loop is unrolled on
    `[..., n, n]`; for `SMALL` < n <= `UNROLL_MAX` it is unrolled on the batch-last layout
    with a shrinking active block; above that it is a `fori_loop`.

    Args:
      a: `[..., n, n]`.

    Returns:
      `[...]` log |det a|; -inf for an exactly singular matrix.
    """
    n = a.shape[-1]
    if SMALL < n <= UNROLL_MAX:
        lead = tuple(range(a.ndim - 2))
        return _log_abs_det_batch_last(jnp.transpose(a, (a.ndim - 2, a.ndim - 1, *lead)))
    idx = jnp.arange(n)

    def step(k, carry):
        a, acc = carry
        col = jnp.where(idx >= k, jnp.abs(a[..., :, k]), -1.0)
        p = jnp.argmax(col, axis=-1)
        row_k = a[..., k, :]
        is_p = (idx == p[..., None])[..., :, None]
        row_p = jnp.sum(jnp.where(is_p, a, 0.0), axis=-2)
        is_k = (idx == k)[:, None]
        a = jnp.where(is_k, row_p[..., None, :], jnp.where(is_p, row_k[..., None, :], a))
        pivot = a[..., k, k]
        acc = acc + jnp.log(jnp.abs(pivot))
        below = (idx > k).astype(a.dtype)
        factor = below * a[..., :, k] / jnp.where(pivot == 0, 1.0, pivot)[..., None]
        a = a - factor[..., :, None] * a[..., k, None, :]
        return a, acc

    carry = (a, jnp.zeros(a.shape[:-2], a.dtype))
    if n <= SMALL:
        for k in range(n):
            carry = step(k, carry)
        return carry[1]
    return jax.lax.fori_loop(0, n, step, carry)[1]


def _log_abs_det_batch_last(a: jax.Array) -> jax.Array:
    """log |det| of `[n, n, ...]` (matrix axes first), LU with partial pivoting unrolled over
    the columns; after column k only the trailing `[n-k-1, n-k-1]` block is carried."""
    n = a.shape[0]
    batch_ones = (1,) * (a.ndim - 2)
    acc = jnp.zeros(a.shape[2:], a.dtype)
    sub = a
    for k in range(n):
        m = n - k
        p = jnp.argmax(jnp.abs(sub[:, 0]), axis=0)  # pivot row within the active block
        is_p = jnp.arange(m).reshape((m, 1) + batch_ones) == p  # [m, 1, ...]
        row_p = jnp.sum(jnp.where(is_p, sub, 0.0), axis=0)  # [m, ...]
        pivot = row_p[0]
        acc = acc + jnp.log(jnp.abs(pivot))
        if m == 1:
            break
        # Swap: the pivot row moves to the top, the top row takes its place below.
        rest = jnp.where(is_p[1:], sub[0][None], sub[1:])
        factor = rest[:, 0] / jnp.where(pivot == 0, 1.0, pivot)
        sub = rest[:, 1:] - factor[:, None] * row_p[None, 1:]
    return acc


def log_abs_det_identity_plus(jac: jax.Array) -> jax.Array:
    """log |det(I + J)| of square `[..., D, D]` residual-branch Jacobians."""
    return log_abs_det(jnp.eye(jac.shape[-1], dtype=jac.dtype) + jac)


def half_logdet_jjt(jac: jax.Array) -> jax.Array:
    """½ log det(J J^T) of `[..., d, D]` Jacobians (d <= D): the injective-flow volume term.

    J J^T is symmetric positive definite for J of full row rank; its LU needs no pivoting but
    `log_abs_det` pivots anyway, which costs nothing at this size.
    """
    return 0.5 * log_abs_det(small_matmul(jac, jnp.swapaxes(jac, -1, -2)))


def spectral_norm_gram(jac: jax.Array, *, squarings: int = 10) -> jax.Array:
    r"""Largest singular value of `[..., d, D]` matrices from their formed Gram matrix.

    G = J^T J (or J J^T, the smaller side) is squared `squarings` times with renormalisation,
    B ∝ G^(2^squarings), i.e. 2^squarings power-iteration steps at the cost of `squarings`
    small matmuls. The column of B with the largest norm is the top eigenvector u of G up to
    a relative error (lambda_2 / lambda_1)^(2^squarings); it is held fixed (stop-gradient)
    and sigma = ||J u|| (or ||J^T u||), whose gradient is that of the top singular value.
    If the two largest singular values nearly coincide the estimate still lies between
    them.

    Args:
      jac: `[..., d, D]`.
      squarings: number of squarings (10 = 1,024 power steps).

    Returns:
      `[...]` spectral norms.
    """
    d, dd = jac.shape[-2:]
    jt = jnp.swapaxes(jac, -1, -2)
    # Rows of the smaller side: the vector u lives in R^min(d, D).
    small_out = d <= dd
    gram = small_matmul(jac, jt) if small_out else small_matmul(jt, jac)
    b = jax.lax.stop_gradient(gram)
    for _ in range(squarings):
        b = b / (jnp.max(jnp.abs(b), axis=(-2, -1), keepdims=True) + 1e-30)
        b = small_matmul(b, b)
    norms = jnp.sum(b**2, axis=-2)  # squared norm of every column
    j = jnp.argmax(norms, axis=-1)
    u = jnp.take_along_axis(b, j[..., None, None], axis=-1)[..., 0]
    u = jax.lax.stop_gradient(u / (jnp.linalg.norm(u, axis=-1, keepdims=True) + 1e-30))
    image = (
        jnp.einsum("...ij,...i->...j", jac, u)
        if small_out
        else jnp.einsum("...ij,...j->...i", jac, u)
    )
    return jnp.linalg.norm(image, axis=-1)
