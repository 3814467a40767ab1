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


def _moments(x, p, u):
    mx = x.mean(0)
    cov = lambda a, b: (a - a.mean(0)).T @ (b - b.mean(0)) / a.shape[0]  # noqa: E731
    return dict(mean_x=mx, cov_xx=cov(x, x), cov_pp=cov(p, p), cov_xp=cov(x, p), cov_xu=cov(x, u))


def _exclusive_data(n=4000, seed=0):
    """x [n, 5]: two directions carry the partner p's content (plus noise), three are
    independent of p; mixed by a random matrix. u [n, 3] mixes both kinds."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    shared = p[:, :2] + 0.2 * rng.normal(size=(n, 2))
    excl = rng.normal(size=(n, 3))
    x = np.concatenate([shared, excl], 1) @ rng.normal(size=(5, 5)) + 0.5
    u = np.concatenate([shared, excl], 1) @ rng.normal(size=(5, 3)) + 0.05 * rng.normal(size=(n, 3))
    return x, p, u


def test_canonical_directions_against_numpy_cca():
    """The correlations are numpy's CCA (singular values of the whitened cross-covariance)
    and the variates are uncorrelated with unit variance."""
    from jaxmr.losses import canonical_directions

    x, p, _ = _exclusive_data(n=2000)
    m = _moments(x, p, p)

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c)
        return v @ np.diag(w**-0.5) @ v.T

    ref = np.linalg.svd(inv_sqrt(m["cov_xx"]) @ m["cov_xp"] @ inv_sqrt(m["cov_pp"]))[1]
    dirs, corr = canonical_directions(
        jnp.asarray(m["cov_xx"]), jnp.asarray(m["cov_pp"]), jnp.asarray(m["cov_xp"]), ridge=1e-9
    )
    np.testing.assert_allclose(np.asarray(corr)[:3], ref, atol=1e-4)
    np.testing.assert_allclose(np.asarray(corr)[3:], 0.0)  # x is wider than p
    d = np.asarray(dirs, np.float64)
    np.testing.assert_allclose(d.T @ m["cov_xx"] @ d, np.eye(5), atol=1e-3)
    assert corr[0] > 0.9 and corr[1] > 0.9 and corr[2] < 0.1  # two shared directions


def test_exclusive_residual_removes_the_shared_variates_then_x_from_u():
    """k = 2 (the two shared directions): x~ keeps no correlation with p beyond the third
    canonical correlation (sample noise), while x had > 0.9; the residual of u has zero
    cross-covariance with x~ (hence with every linear function of the exclusive variates)
    but keeps u's shared part. k = 0 is the full least-squares residual of u on x."""
    from jaxmr.losses import cross_correlation, exclusive_residual

    x, p, u = _exclusive_data()
    m = {k: jnp.asarray(v) for k, v in _moments(x, p, u).items()}
    xj, uj = jnp.asarray(x), jnp.asarray(u)
    r, x_excl, corr = exclusive_residual(uj, xj, **m, k=2, ridge=1e-9)
    before = np.abs(np.asarray(cross_correlation(xj, jnp.asarray(p))))
    after = np.abs(np.asarray(cross_correlation(x_excl, jnp.asarray(p))))
    assert before.max() > 0.5 and after.max() < max(float(corr[2]), 0.05) + 1e-3, (before, after)
    xc = np.asarray(residual_cross_covariance(r, x_excl))
    assert np.abs(xc).max() < 1e-4 * np.abs(np.asarray(residual_cross_covariance(uj, xj))).max()
    # the shared part of u stays: r still predicts p well (R² of p from r by least squares)
    design = np.concatenate([np.asarray(r), np.ones((len(p), 1))], 1)
    resid = p[:, :2] - design @ np.linalg.lstsq(design, p[:, :2], rcond=None)[0]
    assert 1 - resid.var(0).sum() / p[:, :2].var(0).sum() > 0.9
    # k = 0: u minus its least-squares prediction from x (intercept kept)
    r0, x0, _ = exclusive_residual(uj, xj, **m, k=0, ridge=1e-9)
    design = np.concatenate([x, np.ones((len(x), 1))], 1)
    coef = np.linalg.lstsq(design, u, rcond=None)[0][:-1]
    # (float32: u is ~3 in scale, its residual ~0.05, so cancellation leaves ~1e-3)
    np.testing.assert_allclose(np.asarray(r0), u - (x - x.mean(0)) @ coef, atol=3e-3)
    np.testing.assert_allclose(np.asarray(x0), x, atol=1e-4)  # all variates kept: x itself
    with pytest.raises(ValueError, match="0 <= k < 5"):
        exclusive_residual(uj, xj, **m, k=5)
