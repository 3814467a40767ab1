"""scripts/disncl_posthoc_residual.py: the closed-form residual and the removal of canonical
variates against constructed codes."""

import numpy as np

from tests.scripts.loader import load_script


def test_residual_is_uncorrelated_with_x_and_keeps_what_x_lacks():
    mod = load_script("disncl_posthoc_residual")
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=(n, 3))
    own = rng.normal(size=n)
    u = np.stack([x[:, 0] + 0.5 * own, 2.0 * x[:, 1] - x[:, 2]], axis=1) + 1.0
    r = mod.closed_form_residual(u, x, u, x)
    xc = x - x.mean(0)
    assert np.abs((r - r.mean(0)).T @ xc / n).max() < 1e-8
    # what x lacks stays (up to its in-sample correlation with x, ~1/sqrt(n))
    assert np.corrcoef(r[:, 0], own)[0, 1] > 0.999
    assert abs(np.std(r[:, 0]) - 0.5 * np.std(own)) < 0.01
    np.testing.assert_allclose(r[:, 1], 1.0, atol=1e-6)  # fully predicted: only the mean stays


def test_removing_the_partner_correlated_variate_keeps_the_exclusive_one():
    """x = [shared + exclusive, shared - exclusive]; the partner sees only the shared factor.
    The one canonical variate of x correlated with the partner is the shared factor, so after
    removing it x carries the exclusive factor and nothing of the shared one."""
    mod = load_script("disncl_posthoc_residual")
    rng = np.random.default_rng(1)
    n = 5000
    shared, excl = rng.normal(size=n), rng.normal(size=n)
    x = np.stack([shared + excl, shared - excl], axis=1)
    partner = np.stack([shared + 0.1 * rng.normal(size=n), rng.normal(size=n)], axis=1)
    dirs = mod.canonical_directions(x, partner, 1)
    assert dirs.shape == (2, 1)
    xt = mod.remove_variates(x, dirs, x)
    assert abs(np.corrcoef(xt[:, 0], shared)[0, 1]) < 0.02
    assert abs(np.corrcoef(xt[:, 0], excl)[0, 1]) > 0.99
