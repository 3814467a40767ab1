"""The invertible residual embedding: Jacobian terms, exact likelihood, inverse round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmr.losses import vae
from jaxmr.losses.flow import residual_flow_jacobian_terms
from jaxmr.losses.jacobian import mlp_jacobian_transposed
from jaxmr.models.ivae import MLP, ConditionalPrior, GaussianEncoder, ResidualFlow


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


@pytest.mark.parametrize("activation", ["tanh", "lipswish", "leaky_relu"])
def test_mlp_jacobian_from_slopes_matches_jacfwd(activation):
    mlp = MLP(4, (7, 6, 5), 3, activation=activation, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (9, 4))
    out, slopes = mlp.forward_with_slopes(x)
    np.testing.assert_allclose(out, mlp(x), rtol=1e-6, atol=1e-6)
    assert [s.shape for s in slopes] == [(9, 7), (9, 6), (9, 5)]
    jt = mlp_jacobian_transposed(mlp.kernels(), slopes)
    assert jt.shape == (9, 4, 3)  # [B, in, out]: the transpose of jacfwd's [B, out, in]
    want = jax.vmap(jax.jacfwd(mlp))(x)
    np.testing.assert_allclose(jt, jnp.swapaxes(want, -1, -2), rtol=1e-5, atol=1e-6)
    # Stacked blocks: a leading axis on weights and slopes gives one Jacobian per block.
    stacked = mlp_jacobian_transposed(
        [jnp.stack([k, 2 * k]) for k in mlp.kernels()], [jnp.stack([s, s]) for s in slopes]
    )
    np.testing.assert_allclose(stacked[1], 2 ** len(mlp.kernels()) * jt, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="slope"):
        mlp_jacobian_transposed(mlp.kernels(), slopes[:1])


# n <= 8 and the batch-last LU path (its gradient compiles in ~30 s: slow).
@pytest.mark.parametrize("dim", [5, pytest.param(10, marks=pytest.mark.slow)])
def test_analytic_jacobian_terms_and_gradients_equal_autodiff(dim):
    # Random parameters large enough for the hinge penalty to be active on some branches.
    flow = ResidualFlow(dim, num_blocks=3, hidden=(12, 12), init_scale=1.5, rngs=nnx.Rngs(4))
    for k in range(3):
        getattr(flow, f"log_scale_{k}")[...] = 0.2 * jax.random.normal(jax.random.key(k), (dim,))
    y = jax.random.normal(jax.random.key(5), (16, dim))
    graphdef, params = nnx.split(flow)

    def loss_and_grad(params, mode):
        def loss(params):
            f = nnx.merge(graphdef, params)
            z, logdet, sig = _forward_with_terms(f, y, jax.random.key(0), jacobian_mode=mode)
            pen = jnp.sum(jax.nn.relu(sig - 0.7) ** 2)
            return jnp.sum(z**2) - jnp.sum(logdet) + 10 * pen, (z, logdet, sig)

        return jax.value_and_grad(loss, has_aux=True)(params)

    loss_and_grad = jax.jit(loss_and_grad, static_argnums=1)
    (l_new, (z, ld, sig)), g_new = loss_and_grad(params, "auto")
    (l_old, (z0, ld0, sig0)), g_old = loss_and_grad(params, "fwd")
    assert float(jnp.max(sig0)) > 0.7  # the penalty's gradient is part of the check
    np.testing.assert_allclose(z, z0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ld, ld0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sig, sig0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l_new, l_old, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_new), jax.tree.leaves(g_old), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


def test_flow_rejects_unknown_jacobian_term_kinds():
    flow = _flow(dim=3, blocks=1, scale=0.3, seed=0)
    y = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="spectral"):
        _forward_with_terms(flow, y, jax.random.key(0), spectral="svd")
    with pytest.raises(ValueError, match="logdet"):
        _forward_with_terms(flow, y, jax.random.key(0), logdet="lu")
    # `none` skips the norms (the log det alone), not the log det.
    z, logdet, sigmas = _forward_with_terms(flow, y, jax.random.key(0), spectral="none")
    z0, logdet0, _ = _forward_with_terms(flow, y, jax.random.key(0))
    assert sigmas.shape == (2, 0)
    np.testing.assert_allclose(logdet, logdet0, rtol=1e-6)
    np.testing.assert_allclose(z, z0, rtol=1e-6)


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
