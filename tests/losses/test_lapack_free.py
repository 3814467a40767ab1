"""The LAPACK-free exact Jacobian terms above the small-matrix size: the batch-last unrolled LU
(`SMALL` < n <= `UNROLL_MAX`), the `fori_loop` LU beyond it, and the Gram-squaring spectral norm,
against numpy's slogdet / inverse / SVD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmr.losses import lapack_free


@pytest.mark.parametrize("n", [10, 16, 20])  # 10, 16: batch-last unrolled; 20: fori_loop
def test_log_abs_det_matches_slogdet_and_inverse(n):
    a = jax.random.normal(jax.random.key(n), (2, 3, n, n))  # two batch axes
    want = np.linalg.slogdet(np.asarray(a, np.float64))[1]
    # jit: run eagerly, the unrolled LU compiles each of its ~100 small ops on its own.
    value_and_grad = jax.jit(jax.value_and_grad(lambda m: lapack_free.log_abs_det(m).sum()))
    np.testing.assert_allclose(jax.jit(lapack_free.log_abs_det)(a), want, rtol=1e-4, atol=1e-4)
    total, grad = value_and_grad(a)
    np.testing.assert_allclose(total, want.sum(), rtol=1e-4)
    # d log|det A| / dA = A^{-T}
    inv_t = np.swapaxes(np.linalg.inv(np.asarray(a, np.float64)), -1, -2)
    np.testing.assert_allclose(grad, inv_t, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("n", [12, 16])
def test_log_abs_det_pivots_and_takes_an_unbatched_matrix(n):
    # A reversed permutation has a zero leading pivot: only pivoting gets it right.
    fn = jax.jit(lapack_free.log_abs_det)
    perm = jnp.eye(n)[::-1] * 2.0
    np.testing.assert_allclose(fn(perm), n * np.log(2.0), rtol=1e-6)
    # Rows that need a swap at a later column (the leading 2 x 2 block is singular).
    a = np.eye(n, dtype=np.float32)
    a[:2, :2] = [[1.0, 1.0], [1.0, 1.0]]
    a[1, 2] = 3.0
    want = np.linalg.slogdet(a.astype(np.float64))[1]
    np.testing.assert_allclose(fn(jnp.asarray(a)), want, atol=1e-5)


def test_log_abs_det_identity_plus_of_a_residual_jacobian():
    # The flow's case: I + J with ||J|| < 1, 6 blocks x 8 examples of 12 x 12.
    j = jax.random.normal(jax.random.key(3), (6, 8, 12, 12))
    j = 0.6 * j / np.linalg.norm(np.asarray(j), ord=2, axis=(-2, -1))[..., None, None]
    want = np.linalg.slogdet(np.eye(12) + np.asarray(j, np.float64))[1]
    got = jax.jit(lapack_free.log_abs_det_identity_plus)(j)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(10, 10), (12, 12), (16, 16), (10, 16)])
def test_spectral_norm_gram_matches_svd(shape):
    jac = jax.random.normal(jax.random.key(2), (4, *shape))
    u, s, vt = np.linalg.svd(np.asarray(jac, np.float64))
    np.testing.assert_allclose(jax.jit(lapack_free.spectral_norm_gram)(jac), s[:, 0], rtol=1e-4)
    grad = jax.grad(lambda j: lapack_free.spectral_norm_gram(j).sum())(jac)
    np.testing.assert_allclose(grad, u[:, :, :1] * vt[:, :1, :], atol=2e-3)
