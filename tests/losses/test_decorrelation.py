"""Exact linear decorrelation: residual and least-squares loss against hand values, the
closed-form regression as the loss's minimiser with zero residual cross-covariance, and why
shrinking a direction does not lower a ridge probe's R² (the reason for the residual)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmr.losses import least_squares_loss, linear_residual, residual_cross_covariance
from jaxmr.metrics.factor_probe import heldout_r2


def test_residual_and_loss_hand_values():
    u = jnp.array([[1.0, 2.0], [3.0, -1.0]])
    x = jnp.array([[1.0], [2.0]])
    coef = jnp.array([[0.5, 1.0]])
    # rows: [1 - 0.5, 2 - 1] = [0.5, 1]; [3 - 1, -1 - 2] = [2, -3]
    np.testing.assert_allclose(linear_residual(u, x, coef), [[0.5, 1.0], [2.0, -3.0]])
    # with intercept [0.5, 0]: errors [0, 1] and [1.5, -3] -> (1 + 2.25 + 9) / 2
    loss = least_squares_loss(u, x, coef, jnp.array([0.5, 0.0]))
    np.testing.assert_allclose(loss, (1.0 + 2.25 + 9.0) / 2, rtol=1e-6)


def test_closed_form_regression_minimises_the_loss_and_decorrelates():
    rng = np.random.default_rng(0)
    n, k, d = 200, 5, 3
    x = rng.normal(size=(n, k)) + 2.0
    u = x @ rng.normal(size=(k, d)) + 0.3 * rng.normal(size=(n, d)) + 1.0
    design = np.concatenate([x, np.ones((n, 1))], axis=1)
    sol = np.linalg.lstsq(design, u, rcond=None)[0]
    coef, intercept = jnp.asarray(sol[:k]), jnp.asarray(sol[k])
    u_, x_ = jnp.asarray(u), jnp.asarray(x)
    g_coef, g_int = jax.grad(least_squares_loss, argnums=(2, 3))(u_, x_, coef, intercept)
    assert float(jnp.max(jnp.abs(g_coef))) < 1e-5 and float(jnp.max(jnp.abs(g_int))) < 1e-5
    r = linear_residual(u_, x_, coef)
    assert float(jnp.max(jnp.abs(residual_cross_covariance(r, x_)))) < 1e-5
    # without the regression the cross-covariance is far from zero
    assert float(jnp.max(jnp.abs(residual_cross_covariance(u_, x_)))) > 0.1
    # the residual keeps u's mean minus the predicted part (the intercept is not removed)
    np.testing.assert_allclose(jnp.mean(r, 0), intercept, atol=1e-5)


def test_shrinking_a_direction_leaves_the_probe_r2_unchanged():
    """A ridge probe reads a factor from a direction far smaller than the rest of the code:
    shrinking the factor's direction 10x (to a tenth of the other content's per-direction
    std) leaves its held-out R² above 0.99; removing it drops R² to ~0. (The ridge penalty
    does make very small scales count: at 1/300 of the other content R² is ~0.5.)"""
    rng = np.random.default_rng(1)
    n = 1000
    factor = rng.uniform(size=n)
    q = np.linalg.qr(rng.normal(size=(8, 8)))[0]  # orthonormal directions
    other = rng.normal(size=(n, 7)) @ q[:, 1:].T  # content orthogonal to the factor's direction
    codes = other + factor[:, None] * q[:, 0][None, :]
    shrunk = other + 0.1 * factor[:, None] * q[:, 0][None, :]
    removed = other
    r2 = [heldout_r2(c, factor)[0] for c in (codes, shrunk, removed)]
    assert r2[0] > 0.99 and r2[1] > 0.99 and r2[2] < 0.2, r2


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"coef \(3, 2\)"):
        linear_residual(jnp.zeros((4, 2)), jnp.zeros((4, 1)), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"intercept \(3,\)"):
        least_squares_loss(jnp.zeros((4, 2)), jnp.zeros((4, 1)), jnp.zeros((1, 2)), jnp.zeros(3))


def test_cross_correlation_against_numpy_and_weights_as_repeats():
    from jaxmr.losses import cross_correlation

    rng = np.random.default_rng(2)
    a = rng.normal(size=(40, 3))
    b = 0.7 * a[:, :2] + rng.normal(size=(40, 2))
    got = np.asarray(cross_correlation(jnp.asarray(a), jnp.asarray(b)))
    want = np.corrcoef(a.T, b.T)[:3, 3:]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert abs(want[0, 0]) > 0.3  # the fixture is correlated, so the check is not vacuous
    # scale- and shift-free per column
    scaled = np.asarray(cross_correlation(jnp.asarray(5.0 * a + 3.0), jnp.asarray(0.01 * b)))
    np.testing.assert_allclose(scaled, want, atol=1e-4)
    # integer weights = rows repeated; a zero weight drops the row
    w = rng.integers(0, 4, size=40).astype(np.float64)
    rep = np.repeat(np.arange(40), w.astype(int))
    got_w = np.asarray(cross_correlation(jnp.asarray(a), jnp.asarray(b), jnp.asarray(w)))
    np.testing.assert_allclose(got_w, np.corrcoef(a[rep].T, b[rep].T)[:3, 3:], atol=1e-5)
    # hand value: perfectly anti-correlated columns, and a constant column reads 0
    x = jnp.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    y = jnp.array([[6.0], [4.0], [2.0]])
    np.testing.assert_allclose(cross_correlation(x, y), [[-1.0], [0.0]], atol=1e-4)
    with pytest.raises(ValueError, match="same N"):
        cross_correlation(jnp.ones((3, 2)), jnp.ones((4, 2)))
