"""The invertible residual embedding: Jacobian terms, exact likelihood, inverse round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmr.losses import vae
from jaxmr.losses.flow import residual_flow_jacobian_terms
from jaxmr.models.ivae import ConditionalPrior, GaussianEncoder, ResidualFlow


def _flow(dim=3, blocks=3, scale=0.5, seed=0):
    return ResidualFlow(dim, num_blocks=blocks, hidden=(16,), init_scale=scale, rngs=nnx.Rngs(seed))


def _forward_with_terms(flow, y, key, **options):
    """(g(y), log|det J_g(y)|, branch sigmas): the model's blocks through the loss-side terms."""
    z, linear_log_det, blocks = flow.forward_with_blocks(y)
    logdet, sigmas = residual_flow_jacobian_terms(
        blocks, key, linear_log_det=linear_log_det, **options
    )
    return z, logdet, sigmas


def test_forward_terms_match_full_jacobian_of_g():
    flow = _flow()
    # Non-trivial affine layers too.
    flow.log_scale_1[...] = jnp.array([0.2, -0.1, 0.3])
    y = jax.random.normal(jax.random.key(0), (6, 3))
    z, logdet, sigmas = _forward_with_terms(flow, y, jax.random.key(1))
    np.testing.assert_allclose(z, flow(y), rtol=1e-6, atol=1e-6)
    full = jax.vmap(jax.jacfwd(flow))(y)
    np.testing.assert_allclose(logdet, jnp.linalg.slogdet(full)[1], rtol=1e-5, atol=1e-5)
    assert sigmas.shape == (6, 3)
    # Estimated terms agree with the exact ones.
    _, logdet_s, sig_p = _forward_with_terms(
        flow,
        y,
        jax.random.key(2),
        logdet="series",
        spectral="power",
        series_terms=30,
        probes=4000,
        power_iters=50,
    )
    np.testing.assert_allclose(sig_p, sigmas, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(logdet_s, logdet, atol=0.05)


def test_flow_rejects_unknown_jacobian_term_kinds():
    flow = _flow(dim=3, blocks=1, scale=0.3, seed=0)
    y = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="spectral"):
        _forward_with_terms(flow, y, jax.random.key(0), spectral="svd")
    with pytest.raises(ValueError, match="logdet"):
        _forward_with_terms(flow, y, jax.random.key(0), logdet="lu")


def test_flow_density_integrates_to_one():
    # A contractive 2-D flow defines a normalised density p(y) = N(g(y); 0, I) |det J_g(y)|.
    flow = _flow(dim=2, blocks=2, scale=0.4, seed=1)
    g = jnp.linspace(-7, 7, 281)
    grid = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
    z, logdet, sigmas = _forward_with_terms(flow, grid, jax.random.key(0))
    assert float(jnp.max(sigmas)) < 1.0
    dens = jnp.exp(vae.gaussian_log_prob(z, 0.0, 0.0) + logdet)
    np.testing.assert_allclose(float(jnp.sum(dens) * (g[1] - g[0]) ** 2), 1.0, atol=5e-3)


def test_inverse_round_trip():
    flow = _flow(dim=5, blocks=4, scale=0.6, seed=2)
    y = jax.random.normal(jax.random.key(3), (32, 5)) * 2
    _, _, sigmas = _forward_with_terms(flow, y, jax.random.key(0))
    assert float(jnp.max(sigmas)) < 1.0  # contractive, so the fixed point exists
    y_back = flow.inverse(flow(y), num_iters=200)
    np.testing.assert_allclose(y_back, y, atol=1e-4)
    assert float(jnp.max(jnp.abs(flow.inverse(flow(y), num_iters=2) - y))) > 1e-4


@pytest.mark.parametrize("mean", ["learned", "zero"])
def test_conditional_prior_shapes_and_zero_mean(mean):
    prior = ConditionalPrior(7, 3, hidden=(8,), mean=mean, rngs=nnx.Rngs(0))
    m, lv = prior(jnp.ones((4, 7)))
    assert m.shape == lv.shape == (4, 3)
    if mean == "zero":
        assert float(jnp.max(jnp.abs(m))) == 0.0
    unc = ConditionalPrior(7, 3, conditional=False, rngs=nnx.Rngs(0))
    m1, _ = unc(jnp.ones((2, 7)))
    m2, _ = unc(jnp.zeros((2, 7)))
    np.testing.assert_array_equal(m1, m2)


def test_prior_rejects_unknown_mean():
    with pytest.raises(ValueError, match="prior mean"):
        ConditionalPrior(2, 2, mean="bogus", rngs=nnx.Rngs(0))


def test_encoder_shapes():
    m, lv = GaussianEncoder(6, 2, hidden=(8,), rngs=nnx.Rngs(0))(jnp.ones((3, 6)))
    assert m.shape == lv.shape == (3, 2)
