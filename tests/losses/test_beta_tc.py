"""The published iVAE beta-TC objective: minibatch-weighted log q^ by brute force, and its
relation to the Monte-Carlo and analytic ELBO."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from scipy.special import logsumexp

from jaxmr.losses import vae


def _batch(m=4, d=3, seed=0):
    rng = np.random.default_rng(seed)
    mean, logvar = rng.normal(size=(m, d)), rng.normal(size=(m, d)) * 0.5
    z = mean + np.exp(0.5 * logvar) * rng.normal(size=(m, d))
    return z, mean, logvar


def test_minibatch_weighted_log_q_brute_force():
    z, mean, logvar = _batch()
    n = 1000
    m = len(z)
    joint, dims = vae.minibatch_weighted_log_q(z, mean, logvar, dataset_size=n)
    for i in range(m):
        comps = [
            stats.multivariate_normal(mean[k], np.diag(np.exp(logvar[k]))).logpdf(z[i])
            for k in range(m)
        ]
        np.testing.assert_allclose(joint[i], logsumexp(comps) - np.log(m * n), rtol=1e-5)
        per_dim = [
            logsumexp(
                [
                    stats.norm(mean[k, j], np.exp(0.5 * logvar[k, j])).logpdf(z[i, j])
                    for k in range(m)
                ]
            )
            - np.log(m * n)
            for j in range(z.shape[1])
        ]
        np.testing.assert_allclose(dims[i], sum(per_dim), rtol=1e-5)


def test_minibatch_weighted_log_q_mask_drops_components():
    z, mean, logvar = _batch(m=5)
    where = jnp.array([True, True, False, True, False])
    keep = np.asarray(where)
    got = vae.minibatch_weighted_log_q(z, mean, logvar, dataset_size=50, where=where)
    # rows of z are all evaluated; components and M come from the kept rows only
    ref_full = [
        # M = 3 kept rows: evaluate z_i against exactly those components
        np.asarray(
            vae.minibatch_weighted_log_q(
                z[i : i + 1].repeat(3, 0), mean[keep], logvar[keep], dataset_size=50
            )[k]
        )[0]
        for k in range(2)
        for i in range(5)
    ]
    np.testing.assert_allclose(np.concatenate([got[0], got[1]]), ref_full, rtol=1e-5)


def _terms(seed=0, m=6, d=3, dy=4):
    rng = np.random.default_rng(seed)
    return dict(
        y=jnp.asarray(rng.normal(size=(m, dy))),
        mean_q=jnp.asarray(rng.normal(size=(m, d))),
        logvar_q=jnp.asarray(rng.normal(size=(m, d)) * 0.3 - 0.5),
        mean_p=jnp.asarray(rng.normal(size=(m, d)) * 0.5),
        logvar_p=jnp.asarray(rng.normal(size=(m, d)) * 0.3),
        w=jnp.asarray(rng.normal(size=(d, dy))),
    )


def test_unit_weights_equal_monte_carlo_elbo_per_sample():
    t = _terms()
    z = vae.reparameterize(jax.random.key(1), t["mean_q"], t["logvar_q"])
    value, parts = vae.beta_tc_elbo(
        t["y"],
        jnp.tanh(z @ t["w"]),
        z,
        obs_logvar=-1.0,
        mean_q=t["mean_q"],
        logvar_q=t["logvar_q"],
        mean_p=t["mean_p"],
        logvar_p=t["logvar_p"],
        dataset_size=100,
        a=1.0,
        b=1.0,
        c=1.0,
        d=1.0,
    )
    mc = (
        vae.gaussian_log_prob(t["y"], jnp.tanh(z @ t["w"]), jnp.full(t["y"].shape, -1.0))
        + vae.gaussian_log_prob(z, t["mean_p"], t["logvar_p"])
        - vae.gaussian_log_prob(z, t["mean_q"], t["logvar_q"])
    )
    np.testing.assert_allclose(value, mc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parts["mc_elbo"], mc, rtol=1e-5, atol=1e-5)
    # the decomposition sums to the prior-side KL sample for any weights
    kl_sample = parts["mutual_info"] + parts["total_correlation"] + parts["dimwise_kl"]
    np.testing.assert_allclose(parts["reconstruction"] - kl_sample, mc, rtol=1e-5, atol=1e-5)


def test_unit_weights_equal_analytic_elbo_in_expectation():
    # Identity decoder y_mean = z (dy = d) so E_q log p(y|z) has a closed form as well.
    t = _terms(seed=2, dy=3)
    s = 20000
    keys = jax.random.split(jax.random.key(3), s)

    def one(k):
        z = vae.reparameterize(k, t["mean_q"], t["logvar_q"])
        v, _ = vae.beta_tc_elbo(
            t["y"],
            z,
            z,
            obs_logvar=0.0,
            mean_q=t["mean_q"],
            logvar_q=t["logvar_q"],
            mean_p=t["mean_p"],
            logvar_p=t["logvar_p"],
            dataset_size=100,
            a=1.0,
            b=1.0,
            c=1.0,
            d=1.0,
        )
        return v

    mc_mean = jnp.mean(jax.lax.map(one, keys, batch_size=1000), 0)
    # E log N(y; z, I) = log N(y; mu, I) - 1/2 sum var_q
    rec = vae.gaussian_log_prob(t["y"], t["mean_q"], 0.0) - 0.5 * jnp.sum(
        jnp.exp(t["logvar_q"]), -1
    )
    analytic = rec - vae.gaussian_kl(t["mean_q"], t["logvar_q"], t["mean_p"], t["logvar_p"])
    np.testing.assert_allclose(mc_mean, analytic, atol=0.05)
    # the published weights give a different objective on the same samples
    z = vae.reparameterize(keys[0], t["mean_q"], t["logvar_q"])
    pub, _ = vae.beta_tc_elbo(
        t["y"],
        z,
        z,
        obs_logvar=0.0,
        mean_q=t["mean_q"],
        logvar_q=t["logvar_q"],
        mean_p=t["mean_p"],
        logvar_p=t["logvar_p"],
        dataset_size=100,
    )
    assert not np.allclose(pub, one(keys[0]), atol=1e-2)
