"""Jacobian terms against closed forms (linear and elementwise maps) and exact references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmr.losses import jacobian as J


def _linear(a):
    return lambda x: a @ x


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
@pytest.mark.parametrize("mode", ["fwd", "rev", "vjp", "auto"])
def test_jacobian_of_linear_map_is_the_matrix(shape, mode):
    a = jax.random.normal(jax.random.key(0), shape)
    x = jax.random.normal(jax.random.key(1), (shape[1],))
    np.testing.assert_allclose(
        J.example_jacobian(_linear(a), x, mode=mode), a, rtol=1e-6, atol=1e-6
    )


def test_jacobian_of_elementwise_map_is_diagonal_and_modes_agree():
    x = jnp.linspace(-2, 2, 6)
    expected = jnp.diag(1 - jnp.tanh(x) ** 2)
    f = lambda v: jnp.tanh(v)
    results = [J.example_jacobian(f, x, mode=m) for m in ("fwd", "rev", "vjp")]
    for r in results:
        np.testing.assert_allclose(r, expected, rtol=1e-6, atol=1e-7)
    xs = jax.random.normal(jax.random.key(2), (7, 4))
    mlp = lambda v: jnp.tanh(v @ jnp.arange(12.0).reshape(4, 3) / 10) ** 2
    fwd, rev, vjp = (J.batched_jacobian(mlp, xs, mode=m) for m in ("fwd", "rev", "vjp"))
    assert fwd.shape == (7, 3, 4)
    np.testing.assert_allclose(fwd, rev, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fwd, vjp, rtol=1e-5, atol=1e-6)


def test_auto_mode_rejects_unknown():
    with pytest.raises(ValueError, match="jacobian mode"):
        J.example_jacobian(jnp.sin, jnp.ones(2), mode="bogus")


def test_spectral_norm_exact_and_power_iteration():
    a = jax.random.normal(jax.random.key(3), (6, 9))
    x = jnp.ones(9)
    exact_np = np.linalg.svd(np.asarray(a), compute_uv=False)[0]
    np.testing.assert_allclose(J.spectral_norm(a), exact_np, rtol=1e-5)
    np.testing.assert_allclose(J.spectral_norm(a.T), exact_np, rtol=1e-5)
    sigma, _ = J.spectral_norm_power(_linear(a), x, jax.random.key(4), n_iter=50)
    np.testing.assert_allclose(sigma, exact_np, rtol=1e-4)
    # Power iteration is a lower bound at any iteration count.
    sigma2, _ = J.spectral_norm_power(_linear(a), x, jax.random.key(4), n_iter=1)
    assert sigma2 <= exact_np * (1 + 1e-5)


def test_spectral_norm_batched_and_differentiable():
    a = jax.random.normal(jax.random.key(5), (4, 5, 5))
    np.testing.assert_allclose(
        J.spectral_norm(a), [np.linalg.norm(np.asarray(m), 2) for m in a], rtol=1e-5
    )
    g = jax.grad(lambda m: J.spectral_norm(m))(a[0])
    u, s, vt = np.linalg.svd(np.asarray(a[0]))
    np.testing.assert_allclose(g, np.outer(u[:, 0], vt[0]), rtol=1e-3, atol=1e-4)


def test_log_abs_det_identity_plus_exact():
    a = 0.3 * jax.random.normal(jax.random.key(6), (5, 5))
    np.testing.assert_allclose(
        J.log_abs_det_identity_plus(a),
        np.linalg.slogdet(np.eye(5) + np.asarray(a))[1],
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        J.log_abs_det(a + jnp.eye(5)), J.log_abs_det_identity_plus(a), rtol=1e-6
    )


def test_logdet_power_series_matches_exact_for_contractive_branch():
    w = jax.random.normal(jax.random.key(7), (4, 4))
    w = 0.5 * w / np.linalg.norm(np.asarray(w), 2)  # ||J|| <= 0.5
    h = lambda v: jnp.tanh(v @ w)
    x = jnp.array([0.3, -0.2, 0.5, 0.1])
    exact = J.log_abs_det_identity_plus(jax.jacfwd(h)(x))
    est = J.logdet_power_series(h, x, jax.random.key(8), n_terms=20, n_probes=20_000)
    # Truncation error <= sum_{k>20} 0.5^k / k < 1e-7; the rest is probe noise (~1/sqrt(P)).
    np.testing.assert_allclose(est, exact, atol=0.02)


def test_orthogonality_penalty_exact_closed_form():
    # Rows scaled by (1, 2): J J^T - I = diag(0, 3) -> ||.||_F^2 = 9.
    jac = jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    np.testing.assert_allclose(J.orthogonality_penalty(jac), 9.0)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 3)))
    np.testing.assert_allclose(J.orthogonality_penalty(jnp.asarray(q.T)), 0.0, atol=1e-10)


def test_orthogonality_probe_estimator_is_unbiased():
    a = jax.random.normal(jax.random.key(9), (3, 6)) * 0.7
    f, x = _linear(a), jnp.zeros(6)
    exact = float(J.orthogonality_penalty(a))
    keys = jax.random.split(jax.random.key(10), 20_000)
    samples = np.asarray(
        jax.vmap(lambda k: J.orthogonality_penalty_probe(f, x, k, n_probes=1))(keys)
    )
    se = samples.std() / np.sqrt(len(samples))
    assert abs(samples.mean() - exact) < 4 * se, (samples.mean(), exact, se)
    # The one-VJP isometry penalty estimates 2||A||_F^2 + (tr A)^2 instead.
    amat = np.asarray(a @ a.T) - np.eye(3)
    target = 2 * np.sum(amat**2) + np.trace(amat) ** 2
    iso = np.asarray(jax.vmap(lambda k: J.isometry_probe_penalty(f, x, k, n_probes=1))(keys))
    assert abs(iso.mean() - target) < 4 * iso.std() / np.sqrt(len(iso))


def test_frobenius_probe_unbiased():
    a = jax.random.normal(jax.random.key(11), (4, 7))
    keys = jax.random.split(jax.random.key(12), 20_000)
    s = np.asarray(jax.vmap(lambda k: J.frobenius_norm_sq_probe(_linear(a), jnp.zeros(7), k))(keys))
    assert abs(s.mean() - float(jnp.sum(a**2))) < 4 * s.std() / np.sqrt(len(s))


def test_half_logdet_jjt_matches_numpy():
    a = np.random.default_rng(1).normal(size=(3, 8))
    np.testing.assert_allclose(
        J.half_logdet_jjt(jnp.asarray(a)), 0.5 * np.linalg.slogdet(a @ a.T)[1], rtol=1e-5
    )


def test_subbatch_and_hinge_penalty():
    xs = jnp.arange(20.0).reshape(10, 2)
    sub = J.subbatch(xs, jax.random.key(0), 4)
    assert sub.shape == (4, 2)
    assert len({tuple(r) for r in np.asarray(sub)}) == 4
    assert J.subbatch(xs, jax.random.key(0), 20) is xs
    pen = J.lipschitz_hinge_penalty(jnp.array([[0.5, 0.9, 1.2]]), bound=0.7)
    np.testing.assert_allclose(pen, [0.2**2 + 0.5**2], rtol=1e-6)


def test_hinge_penalty_is_per_example():
    # [B, K] -> [B]: one value per example, summed over its branches only.
    sigmas = jnp.array([[0.5, 0.9], [1.0, 0.2], [0.7, 0.7]])
    pen = J.lipschitz_hinge_penalty(sigmas, bound=0.7)
    np.testing.assert_allclose(pen, [0.2**2, 0.3**2, 0.0], rtol=1e-5, atol=1e-7)
    # One map per example: [B] is refused (it would be summed over the batch), [B, 1] works.
    one_map = jnp.array([0.9, 1.2])
    with pytest.raises(ValueError, match=r"sigmas\[:, None\]"):
        J.lipschitz_hinge_penalty(one_map, bound=0.7)
    np.testing.assert_allclose(
        J.lipschitz_hinge_penalty(one_map[:, None], bound=0.7), [0.2**2, 0.5**2], rtol=1e-5
    )


def test_public_names_are_functions_with_readable_signatures():
    import inspect

    import jaxmr.losses as L

    assert L.example_jacobian is J.example_jacobian and inspect.ismodule(L.jacobian)
    for name in L.__all__:
        fn = getattr(L, name)
        assert callable(fn) and not inspect.ismodule(fn), name
        sig = str(inspect.signature(fn))
        assert "Union[" not in sig and "jaxlib" not in sig, (name, sig)


def test_jit_and_no_jit_agree():
    a = jax.random.normal(jax.random.key(13), (4, 4)) * 0.3
    h = lambda v: jnp.tanh(v @ a)
    x = jnp.ones(4)
    key = jax.random.key(14)
    for fn in (
        lambda x: J.spectral_norm_power(h, x, key)[0],
        lambda x: J.logdet_power_series(h, x, key, n_probes=3),
        lambda x: J.orthogonality_penalty_probe(h, x, key),
        lambda x: J.spectral_norm(J.example_jacobian(h, x)),
    ):
        np.testing.assert_allclose(fn(x), jax.jit(fn)(x), rtol=1e-5)
