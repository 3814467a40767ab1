r"""Gaussian densities, KL terms and the (i)VAE evidence lower bound, as pure functions.

All functions act on the last axis and return per-example values (reduction by the caller).
Variances are parametrised by their logs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOG_2PI = 1.8378770664093453


def gaussian_log_prob(x: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    r"""log N(x; mean, diag exp(logvar)) summed over the last axis.

        -½ sum_i [log 2pi + logvar_i + (x_i - mean_i)^2 exp(-logvar_i)]

    Args:
      x, mean, logvar: broadcastable `[..., d]`.

    Returns:
      `[...]` log densities.
    """
    return -0.5 * jnp.sum(LOG_2PI + logvar + (x - mean) ** 2 * jnp.exp(-logvar), axis=-1)


def gaussian_kl(
    mean_q: jax.Array, logvar_q: jax.Array, mean_p: jax.Array, logvar_p: jax.Array
) -> jax.Array:
    r"""KL(N(mean_q, diag e^logvar_q) || N(mean_p, diag e^logvar_p)), summed over the last axis.

    ½ sum_i [logvar_p - logvar_q + (e^logvar_q + (mean_q - mean_p)^2) e^-logvar_p - 1]
    """
    return 0.5 * jnp.sum(
        logvar_p
        - logvar_q
        + (jnp.exp(logvar_q) + (mean_q - mean_p) ** 2) * jnp.exp(-logvar_p)
        - 1.0,
        axis=-1,
    )


def reparameterize(key: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I)."""
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


def elbo(
    y: jax.Array,
    y_mean: jax.Array,
    *,
    obs_logvar: jax.Array | float,
    mean_q: jax.Array,
    logvar_q: jax.Array,
    mean_p: jax.Array,
    logvar_p: jax.Array,
    beta: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Per-example (beta-)ELBO with a Gaussian decoder, one reparameterised sample.

        ELBO = log N(y; f(z), sigma_y^2 I) - beta * KL(q(z|.) || p(z|x))

    iVAE: p(z|x) conditional; VAE: mean_p = logvar_p = 0; beta-VAE: beta > 1.

    Args:
      y: `[B, D]` targets; y_mean: `[B, D]` decoder means f(z) at the sample.
      obs_logvar: log sigma_y^2 (scalar or `[D]`).
      mean_q, logvar_q, mean_p, logvar_p: `[B, d]` posterior and prior parameters.
      beta: KL weight.

    Returns:
      (elbo `[B]`, aux with per-example `reconstruction` and `kl`).

    References:
      Kingma & Welling 2014; Higgins et al. 2017; Khemakhem et al., "Variational
      Autoencoders and Nonlinear ICA: A Unifying Framework", AISTATS 2020.
    """
    rec = gaussian_log_prob(y, y_mean, jnp.broadcast_to(obs_logvar, y.shape))
    kl = gaussian_kl(mean_q, logvar_q, mean_p, logvar_p)
    return rec - beta * kl, {"reconstruction": rec, "kl": kl}


def minibatch_weighted_log_q(
    z: jax.Array,
    mean_q: jax.Array,
    logvar_q: jax.Array,
    *,
    dataset_size: int,
    where: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""Minibatch-weighted sampling estimates of the aggregate posterior's log density.

    With q(z) = 1/N sum_n q(z | n) over the N training examples, estimated from a batch of M:

        log q^(z_m)   = logsumexp_k log q(z_m | k) - log(M N)
        log q^(z_mi)  = logsumexp_k log q(z_mi | k) - log(M N)      (per coordinate i)

    (Chen et al. 2018, eq. S6; the estimator of the published iVAE code, whose N is the
    dataset size). The sum over k includes k = m.

    Args:
      z: `[M, d]` samples, z_m ~ q(. | m).
      mean_q, logvar_q: `[M, d]` posterior parameters of the same batch.
      dataset_size: N, the number of training examples.
      where: optional `[M]` bool mask; masked rows are neither mixture components nor
        counted in M (their own outputs are still computed).

    Returns:
      (log q^(z) `[M]`, sum_i log q^(z_i) `[M]`).
    """
    pair = -0.5 * (
        LOG_2PI + logvar_q[None] + (z[:, None, :] - mean_q[None]) ** 2 * jnp.exp(-logvar_q[None])
    )  # [M (sample), M (component), d]
    if where is None:
        m = z.shape[0]
        component = None
    else:
        m = jnp.maximum(jnp.sum(where), 1)
        component = jnp.broadcast_to(where[None, :, None], pair.shape)
    log_norm = jnp.log(m * float(dataset_size))
    joint = jax.nn.logsumexp(
        jnp.sum(pair, -1), axis=1, where=None if component is None else component[..., 0]
    )
    marginals = jax.nn.logsumexp(pair, axis=1, where=component)
    return joint - log_norm, jnp.sum(marginals - log_norm, -1)


def beta_tc_elbo(
    y: jax.Array,
    y_mean: jax.Array,
    z: jax.Array,
    *,
    obs_logvar: jax.Array | float,
    mean_q: jax.Array,
    logvar_q: jax.Array,
    mean_p: jax.Array,
    logvar_p: jax.Array,
    dataset_size: int,
    a: float = 100.0,
    b: float = 1.0,
    c: float = 0.0,
    d: float = 10.0,
    where: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Per-example weighted beta-TC decomposition of the one-sample ELBO (the published iVAE
    objective), to be maximised:

        a log p(y|z) - b [log q(z|x,y) - log q^(z)] - c [log q^(z) - sum_i log q^(z_i)]
                     - d [sum_i log q^(z_i) - log p(z|x)]

    the four brackets being the reconstruction, index-code mutual information, total
    correlation and dimension-wise KL; q^ is `minibatch_weighted_log_q`. With a = b = c = d = 1
    the q^ terms cancel and the value is, per sample and exactly, the Monte-Carlo ELBO
    log p(y|z) + log p(z|x) - log q(z|x,y) (whose expectation over z ~ q is `elbo`). The
    published defaults a, b, c, d = 100, 1, 0, 10 with decoder variance 0.1 weight the
    reconstruction 10x against the prior term and drop the total-correlation term.

    Args:
      y, y_mean: `[M, D]` targets and decoder means f(z); z: `[M, d]` the samples.
      obs_logvar: log decoder variance (scalar or `[D]`).
      mean_q, logvar_q, mean_p, logvar_p: `[M, d]` posterior and prior parameters.
      dataset_size: N of the minibatch-weighted estimator.
      a, b, c, d: the weights; where: optional `[M]` mask (see `minibatch_weighted_log_q`).

    Returns:
      (objective `[M]`, aux with per-example `reconstruction`, `mutual_info`,
      `total_correlation`, `dimwise_kl` and the Monte-Carlo `mc_elbo`).

    References:
      Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018; Khemakhem
      et al., AISTATS 2020 (github.com/ilkhem/iVAE, `cleanIVAE.elbo`).
    """
    rec = gaussian_log_prob(y, y_mean, jnp.broadcast_to(obs_logvar, y.shape))
    log_q_cond = gaussian_log_prob(z, mean_q, logvar_q)
    log_p = gaussian_log_prob(z, mean_p, logvar_p)
    log_q, log_q_dims = minibatch_weighted_log_q(
        z, mean_q, logvar_q, dataset_size=dataset_size, where=where
    )
    parts = {
        "reconstruction": rec,
        "mutual_info": log_q_cond - log_q,
        "total_correlation": log_q - log_q_dims,
        "dimwise_kl": log_q_dims - log_p,
        "mc_elbo": rec + log_p - log_q_cond,
    }
    value = (
        a * rec
        - b * parts["mutual_info"]
        - c * parts["total_correlation"]
        - d * parts["dimwise_kl"]
    )
    return value, parts
