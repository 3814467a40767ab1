"""Mutual-information bounds: variational lower bounds from critic scores, CLUB upper bounds.

Conventions shared by every function here:

* A *score matrix* ``scores[i, j] = T(a_i, b_j)`` comes from a critic applied to all pairs of a
  batch ``{(a_i, b_i)}`` drawn from the joint p(a, b). The diagonal holds the joint (positive)
  pairs; the off-diagonal entries stand in for samples of the product of marginals p(a)p(b).
* ``where`` is an optional ``[N]`` boolean mask of valid examples. A masked example is neither a
  positive nor a negative for any other row; its per-example value is 0 and its gradient is
  finite (zero). The caller reduces per-example values with ``sum(v) / sum(where)``.
* Every function returns per-example values ``[N]`` (the estimate is their masked mean) unless
  the bound does not decompose over examples (Donsker-Varadhan, JSD-derived MI), in which case
  it returns ``(estimate, aux)``.
* Lower bounds are *maximised* over the critic; upper bounds are *minimised* over the encoders
  while their variational q(b|a) is fitted by maximum likelihood (``club_estimator_loss``).

The upper bounds take the variational conditional q(b|a) = N(b; mu(a), diag exp(logvar(a))) as
the per-example arrays ``mu``, ``logvar`` and the samples ``b``, all ``[N, K]``.

References:
  Poole et al., On Variational Bounds of Mutual Information, ICML 2019.
  van den Oord et al., Representation Learning with Contrastive Predictive Coding, 2018.
  Nguyen, Wainwright, Jordan, Estimating divergence functionals and the likelihood ratio by
  convex risk minimization, IEEE T-IT 2010.
  Belghazi et al., Mutual Information Neural Estimation, ICML 2018.
  Hjelm et al., Learning deep representations by mutual information estimation and
  maximization (Deep InfoMax), ICLR 2019.
  Cheng et al., CLUB: A Contrastive Log-ratio Upper Bound of Mutual Information, ICML 2020.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from jaxmr.losses.masking import check_square as _check_square
from jaxmr.losses.masking import valid_mask as _valid
from jaxmr.losses.masking import zero_masked_pairs as _zero_masked_scores

_LOG_2PI = math.log(2.0 * math.pi)  # plain float: no JAX call at import time


# ----------------------------------------------------------------------------- masks and helpers


def _zero_masked_rows(valid: jax.Array, *arrays: chex.Array) -> tuple[jax.Array, ...]:
    return tuple(jnp.where(valid[:, None], x, 0.0) for x in arrays)


def _negative_mask(valid: jax.Array) -> jax.Array:
    """[N, N] mask of product-of-marginals pairs: i != j, both valid."""
    n = valid.shape[0]
    return valid[:, None] & valid[None, :] & ~jnp.eye(n, dtype=bool)


def _row_logmeanexp(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """log of the mean of exp(x[i, j]) over the j with mask[i, j]; rows may be empty.

    Returns ``(lme, nonempty)``. An empty row falls back to its diagonal entry so that its
    logsumexp, and therefore its gradient, stays finite; the caller zeroes its value.
    """
    count = jnp.sum(mask, axis=1)
    nonempty = count > 0
    x = jnp.where(nonempty[:, None], x, 0.0)
    safe_mask = jnp.where(nonempty[:, None], mask, jnp.eye(x.shape[0], x.shape[1], dtype=bool))
    # -inf entries contribute exp(-inf) = 0 to the sum and exactly zero to the gradient.
    lse = jax.nn.logsumexp(jnp.where(safe_mask, x, -jnp.inf), axis=1)
    return lse - jnp.log(jnp.maximum(count, 1)), nonempty


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


# ----------------------------------------------------------------------------- critic scores


def separable_scores(embed_a: chex.Array, embed_b: chex.Array) -> jax.Array:
    """Scores of a separable critic T(a, b) = g(a)ᵀ h(b) from its two embeddings.

    Args:
      embed_a: ``[N, D]`` embeddings g(a_i).
      embed_b: ``[M, D]`` embeddings h(b_j).

    Returns:
      ``[N, M]`` scores ``g(a_i)ᵀ h(b_j)``.
    """
    chex.assert_rank([embed_a, embed_b], 2)
    return embed_a @ embed_b.T


def bilinear_scores(a: chex.Array, b: chex.Array, weight: chex.Array) -> jax.Array:
    """Scores of a bilinear critic T(a, b) = aᵀ W b.

    Args:
      a: ``[N, Da]``.
      b: ``[M, Db]``.
      weight: ``[Da, Db]``.

    Returns:
      ``[N, M]`` scores ``a_iᵀ W b_j``.
    """
    chex.assert_rank([a, b, weight], 2)
    return (a @ weight) @ b.T


def concat_scores(
    critic_fn: Callable[[jax.Array], jax.Array], a: chex.Array, b: chex.Array
) -> jax.Array:
    """Scores of a concatenation critic T(a, b) = f([a; b]) on all N × M pairs.

    Costs N·M critic evaluations (vs N + M for separable critics) but can represent any
    function of the pair.

    Args:
      critic_fn: maps ``[P, Da + Db]`` to ``[P]`` or ``[P, 1]``.
      a: ``[N, Da]``.
      b: ``[M, Db]``.

    Returns:
      ``[N, M]`` scores ``f([a_i; b_j])``.
    """
    chex.assert_rank([a, b], 2)
    n, m = a.shape[0], b.shape[0]
    pairs = jnp.concatenate(
        [jnp.repeat(a, m, axis=0), jnp.tile(b, (n, 1))], axis=-1
    )  # row i * M + j holds [a_i; b_j]
    return jnp.reshape(critic_fn(pairs), (n, m))


# ----------------------------------------------------------------------------- lower bounds


def infonce_lower_bound(scores: chex.Array, *, where: chex.Array | None = None) -> jax.Array:
    """Per-example InfoNCE (CPC) lower bound on I(a; b).

    .. math::
        I_{NCE} = \\frac{1}{N} \\sum_i \\Big[ T_{ii} - \\log \\frac{1}{N} \\sum_j e^{T_{ij}} \\Big]
        \\le \\min(I(a; b), \\log N)

    Low variance, but biased: it saturates at log N, so it needs batches with log N well
    above the true MI. Optimal critic: T(a, b) = log p(b|a)/p(b) + c(a).

    Args:
      scores: ``[N, N]`` critic scores, positives on the diagonal.
      where: optional ``[N]`` bool mask of valid examples; N counts valid examples only.

    Returns:
      ``[N]`` per-example values ``T_ii - logsumexp_j T_ij + log N`` (0 where masked); their
      masked mean is the estimate.

    References:
      van den Oord et al., 2018; Poole et al., ICML 2019, eq. (12).
    """
    _check_square(scores)
    n = scores.shape[0]
    valid = _valid(n, where)
    scores = _zero_masked_scores(scores, valid)
    candidates = valid[:, None] & valid[None, :]
    lme, nonempty = _row_logmeanexp(scores, candidates)
    values = jnp.diagonal(scores) - lme
    return jnp.where(valid & nonempty, values, 0.0)


def nwj_lower_bound(scores: chex.Array, *, where: chex.Array | None = None) -> jax.Array:
    """Per-example NWJ (f-GAN KL, "MINE-f") lower bound on I(a; b).

    .. math::
        I_{NWJ} = E_{p(a,b)}[T] - e^{-1} E_{p(a)p(b)}[e^{T}] \\le I(a; b)

    Unbiased for a fixed critic, not limited by log N, but its variance grows like e^{I}.
    Optimal critic: T(a, b) = 1 + log p(b|a)/p(b). The product-of-marginals expectation uses
    the off-diagonal pairs j != i.

    Args:
      scores: ``[N, N]`` critic scores, positives on the diagonal.
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``[N]`` per-example values ``T_ii - mean_{j != i} exp(T_ij - 1)`` (0 where masked).

    References:
      Nguyen et al., IEEE T-IT 2010; Poole et al., ICML 2019, eq. (6).
    """
    _check_square(scores)
    valid = _valid(scores.shape[0], where)
    scores = _zero_masked_scores(scores, valid)
    lme, nonempty = _row_logmeanexp(scores, _negative_mask(valid))
    values = jnp.diagonal(scores) - jnp.exp(lme - 1.0)
    return jnp.where(valid & nonempty, values, 0.0)


def donsker_varadhan_lower_bound(
    scores: chex.Array,
    *,
    where: chex.Array | None = None,
    log_ema: chex.Array | None = None,
    ema_decay: float = 0.99,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Donsker-Varadhan (MINE) lower bound on I(a; b), optionally with the debiased gradient.

    .. math::
        I_{DV} = E_{p(a,b)}[T] - \\log E_{p(a)p(b)}[e^{T}] \\le I(a; b)

    The minibatch gradient of the log term, E[∇T e^T] / E[e^T], is biased because the
    denominator is estimated on the same batch. MINE replaces the denominator by an
    exponential moving average; pass ``log_ema`` (log of the running mean of e^T; ``-inf`` to
    initialise from this batch) to get that gradient. The returned value is always the plain
    DV estimate; only the gradient changes. Note that the minibatch *value* is biased upward
    (log of a sample mean underestimates the log of the mean), so with a near-optimal critic
    and small N it can exceed I(a; b).

    Args:
      scores: ``[N, N]`` critic scores, positives on the diagonal.
      where: optional ``[N]`` bool mask of valid examples.
      log_ema: optional scalar running log-mean-exp of negative scores, carried by the caller.
      ema_decay: EMA decay in [0, 1).

    Returns:
      ``(estimate, aux)``: the scalar DV estimate, and ``aux`` with ``positive`` (E_p[T]),
      ``log_mean_exp_negative`` (log E_q[e^T]) and, when ``log_ema`` is given, the updated
      ``log_ema`` to carry to the next step.

    References:
      Belghazi et al., ICML 2018, §3.2; Poole et al., ICML 2019, eq. (4).
    """
    _check_square(scores)
    valid = _valid(scores.shape[0], where)
    scores = _zero_masked_scores(scores, valid)
    positive = _masked_mean(jnp.diagonal(scores), valid)
    negatives = _negative_mask(valid)
    n_neg = jnp.sum(negatives)
    flat = jnp.where(negatives, scores, -jnp.inf).reshape(-1)
    # An all-masked batch falls back to one real entry so the logsumexp stays finite.
    flat = jnp.where(n_neg > 0, flat, flat.at[0].set(scores[0, 0]))
    lme = jax.nn.logsumexp(flat) - jnp.log(jnp.maximum(n_neg, 1))
    lme = jnp.where(n_neg > 0, lme, 0.0)
    aux = {"positive": positive, "log_mean_exp_negative": lme}
    if log_ema is None:
        return positive - lme, aux

    lme_sg = jax.lax.stop_gradient(lme)
    log_ema = jnp.asarray(log_ema, dtype=lme.dtype)
    new_log_ema = jnp.where(
        jnp.isfinite(log_ema),
        jnp.logaddexp(jnp.log(ema_decay) + log_ema, jnp.log1p(-ema_decay) + lme_sg),
        lme_sg,
    )
    # ratio = E_batch[e^T] / EMA: its value is stop-gradient(ratio) so the forward value is
    # unchanged, and its gradient is E_batch[∇T e^T] / EMA, MINE's debiased gradient.
    ratio = jnp.exp(lme - jax.lax.stop_gradient(new_log_ema))
    surrogate = ratio - jax.lax.stop_gradient(ratio)
    estimate = positive - lme_sg - surrogate
    aux["log_ema"] = new_log_ema
    return estimate, aux


def jsd_lower_bound(scores: chex.Array, *, where: chex.Array | None = None) -> jax.Array:
    """Per-example Jensen-Shannon (Deep InfoMax) objective; monotone in MI, not an MI bound.

    .. math::
        I_{JSD} = E_{p(a,b)}[-\\mathrm{sp}(-T)] - E_{p(a)p(b)}[\\mathrm{sp}(T)]
        \\le 2\\, JSD(p(a,b) \\| p(a)p(b)) - \\log 4

    with sp the softplus. Bounded, so low variance and stable to train; its optimal critic is
    T = log p(b|a)/p(b), so a critic trained with it can be read out as an MI estimate with
    ``jsd_mi_estimate``.

    Args:
      scores: ``[N, N]`` critic scores, positives on the diagonal.
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``[N]`` per-example values ``-sp(-T_ii) - mean_{j != i} sp(T_ij)`` (0 where masked).

    References:
      Hjelm et al., ICLR 2019, eq. (4); Nowozin et al., f-GAN, NeurIPS 2016.
    """
    _check_square(scores)
    valid = _valid(scores.shape[0], where)
    scores = _zero_masked_scores(scores, valid)
    negatives = _negative_mask(valid)
    count = jnp.sum(negatives, axis=1)
    neg = jnp.sum(jnp.where(negatives, jax.nn.softplus(scores), 0.0), axis=1)
    values = -jax.nn.softplus(-jnp.diagonal(scores)) - neg / jnp.maximum(count, 1)
    return jnp.where(valid & (count > 0), values, 0.0)


def jsd_mi_estimate(
    scores: chex.Array, *, where: chex.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """MI estimate of a JSD-trained critic: NWJ value, JSD gradient.

    The value is the NWJ bound of the shifted critic T + 1 (a valid lower bound on I(a; b),
    tight at the JSD-optimal critic T = log p(b|a)/p(b)); the gradient is that of the JSD
    objective, which is bounded and trains stably. Maximise the returned estimate.

    Args:
      scores: ``[N, N]`` critic scores, positives on the diagonal.
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``(estimate, aux)`` with ``aux["jsd"]`` the JSD objective and ``aux["nwj"]`` the MI value.

    References:
      Poole et al., ICML 2019, §2.3 (``js_fgan_lower_bound`` in their code).
    """
    valid = _valid(scores.shape[0], where)
    scores = _zero_masked_scores(scores, valid)
    jsd = _masked_mean(jsd_lower_bound(scores, where=valid), valid)
    nwj = _masked_mean(nwj_lower_bound(scores + 1.0, where=valid), valid)
    estimate = jax.lax.stop_gradient(nwj) + jsd - jax.lax.stop_gradient(jsd)
    return estimate, {"jsd": jsd, "nwj": nwj}


# ----------------------------------------------------------------------------- upper bounds


def _check_gaussian(mu: chex.Array, logvar: chex.Array, b: chex.Array) -> None:
    chex.assert_rank([mu, logvar, b], 2)
    chex.assert_equal_shape([mu, logvar, b])


def gaussian_log_likelihood(
    mu: chex.Array, logvar: chex.Array, b: chex.Array, *, where: chex.Array | None = None
) -> jax.Array:
    """Per-example log N(b_i; mu_i, diag exp(logvar_i)).

    Args:
      mu: ``[N, K]`` means.
      logvar: ``[N, K]`` log variances.
      b: ``[N, K]`` samples.
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``[N]`` log densities (0 where masked).
    """
    _check_gaussian(mu, logvar, b)
    valid = _valid(mu.shape[0], where)
    mu, logvar, b = _zero_masked_rows(valid, mu, logvar, b)
    values = -0.5 * jnp.sum(jnp.square(b - mu) * jnp.exp(-logvar) + logvar + _LOG_2PI, axis=-1)
    return jnp.where(valid, values, 0.0)


def club_estimator_loss(
    mu: chex.Array, logvar: chex.Array, b: chex.Array, *, where: chex.Array | None = None
) -> jax.Array:
    """Per-example negative log-likelihood that fits CLUB's variational q(b|a).

    .. math:: L_q = -\\log q(b_i \\mid a_i), \\quad q = N(\\mu(a), \\mathrm{diag}\\,
        e^{\\mathrm{logvar}(a)})

    Minimise over q's parameters with ``a`` and ``b`` under ``jax.lax.stop_gradient`` (the
    encoders must not chase the estimator); see ``jaxmr.losses.estimators``.

    Args:
      mu: ``[N, K]`` means of q(b|a_i).
      logvar: ``[N, K]`` log variances of q(b|a_i).
      b: ``[N, K]`` samples paired with a_i.
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``[N]`` negative log-likelihoods (0 where masked).

    References:
      Cheng et al., ICML 2020, Algorithm 1.
    """
    return -gaussian_log_likelihood(mu, logvar, b, where=where)


def club_upper_bound(
    mu: chex.Array, logvar: chex.Array, b: chex.Array, *, where: chex.Array | None = None
) -> jax.Array:
    """Per-example vCLUB upper bound on I(a; b) with a Gaussian q(b|a).

    .. math::
        I_{vCLUB} = \\frac{1}{N}\\sum_i \\Big[\\log q(b_i|a_i)
        - \\frac{1}{N}\\sum_j \\log q(b_j|a_i)\\Big] \\ge I(a; b)

    (an upper bound when q is close to p(b|a); the gap is E[log p(b|a)] - E_{p(a)p(b)}[
    log p(b|a)] - I). Computed in O(N K) through the batch mean and variance of b instead of
    the N × N matrix: mean_j (b_j - mu_i)^2 = var(b) + (mean(b) - mu_i)^2 per dimension.

    Args:
      mu: ``[N, K]`` means of q(b|a_i).
      logvar: ``[N, K]`` log variances of q(b|a_i).
      b: ``[N, K]`` samples paired with a_i.
      where: optional ``[N]`` bool mask of valid examples (the inner mean runs over valid j).

    Returns:
      ``[N]`` per-example values (0 where masked).

    References:
      Cheng et al., ICML 2020, eq. (8).
    """
    _check_gaussian(mu, logvar, b)
    valid = _valid(mu.shape[0], where)
    mu, logvar, b = _zero_masked_rows(valid, mu, logvar, b)
    w = valid.astype(b.dtype)[:, None]
    count = jnp.maximum(jnp.sum(w), 1.0)
    b_mean = jnp.sum(w * b, axis=0) / count
    b_var = jnp.sum(w * jnp.square(b - b_mean), axis=0) / count
    precision = jnp.exp(-logvar)
    values = -0.5 * jnp.sum(
        precision * (jnp.square(b - mu) - b_var - jnp.square(mu - b_mean)), axis=-1
    )
    return jnp.where(valid, values, 0.0)


def marginal_partner_indices(
    key: jax.Array, n: int, *, where: chex.Array | None = None
) -> jax.Array:
    """Indices pi of a random permutation of the valid examples among themselves.

    ``(a_i, b_pi(i))`` then pairs each a with a b drawn from the batch's marginal, as the
    product-of-marginals samples of CLUB-sample and of density-ratio discriminators need.

    Args:
      key: PRNG key.
      n: batch size N.
      where: optional ``[N]`` bool mask; masked examples map to themselves.

    Returns:
      ``[N]`` int32 indices.
    """
    valid = _valid(n, where)
    u = jax.random.uniform(key, (n,))
    # Valid rows first, in random order; the r-th valid row takes the r-th of them.
    order = jnp.argsort(jnp.where(valid, u, 2.0))
    rank = jnp.cumsum(valid) - 1
    return jnp.where(valid, order[jnp.clip(rank, 0, n - 1)], jnp.arange(n)).astype(jnp.int32)


def club_sample_upper_bound(
    mu: chex.Array,
    logvar: chex.Array,
    b: chex.Array,
    *,
    key: jax.Array,
    where: chex.Array | None = None,
) -> jax.Array:
    """Per-example CLUB-sample bound: vCLUB with one random negative per row.

    .. math:: \\log q(b_i|a_i) - \\log q(b_{\\pi(i)}|a_i), \\quad \\pi \\text{ a random
        permutation}

    Unbiased for vCLUB, O(N K), with higher variance than ``club_upper_bound``.

    Args:
      mu: ``[N, K]`` means of q(b|a_i).
      logvar: ``[N, K]`` log variances of q(b|a_i).
      b: ``[N, K]`` samples paired with a_i.
      key: PRNG key for the permutation (valid rows are permuted among themselves).
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``[N]`` per-example values (0 where masked).

    References:
      Cheng et al., ICML 2020, eq. (10).
    """
    _check_gaussian(mu, logvar, b)
    valid = _valid(mu.shape[0], where)
    mu, logvar, b = _zero_masked_rows(valid, mu, logvar, b)
    b_neg = b[marginal_partner_indices(key, mu.shape[0], where=valid)]
    precision = jnp.exp(-logvar)
    values = -0.5 * jnp.sum(precision * (jnp.square(b - mu) - jnp.square(b_neg - mu)), axis=-1)
    return jnp.where(valid, values, 0.0)


def _gaussian_log_likelihood_matrix(
    mu: jax.Array, logvar: jax.Array, b: jax.Array, valid: jax.Array
) -> jax.Array:
    """[N, N] matrix L[i, j] = log q(b_j | a_i), by matmuls instead of an N × N × K tensor."""
    w = valid.astype(b.dtype)[:, None]
    # Centring on the batch mean of b keeps the expanded square from cancelling badly.
    center = jnp.sum(w * b, axis=0) / jnp.maximum(jnp.sum(w), 1.0)
    b, mu = b - center, mu - center
    precision = jnp.exp(-logvar)
    quad = (
        precision @ jnp.square(b).T
        - 2.0 * (mu * precision) @ b.T
        + jnp.sum(jnp.square(mu) * precision, axis=-1, keepdims=True)
    )
    return -0.5 * (quad + jnp.sum(logvar + _LOG_2PI, axis=-1, keepdims=True))


def l1out_upper_bound(
    mu: chex.Array, logvar: chex.Array, b: chex.Array, *, where: chex.Array | None = None
) -> jax.Array:
    """Per-example leave-one-out (L1Out) bound on I(a; b) with a Gaussian q(b|a).

    .. math::
        I_{L1Out} = \\frac{1}{N}\\sum_i \\Big[\\log q(b_i|a_i)
        - \\log \\frac{1}{N-1}\\sum_{j \\ne i} q(b_i|a_j)\\Big]

    An upper bound on I(a; b) when q = p(b|a), much tighter than vCLUB, but O(N^2 K), and
    loose when I(a; b) is large against log N (the leave-one-out mixture then misses the
    conditional's mass; the gap shrinks as N grows).

    Args:
      mu: ``[N, K]`` means of q(b|a_i).
      logvar: ``[N, K]`` log variances of q(b|a_i).
      b: ``[N, K]`` samples paired with a_i.
      where: optional ``[N]`` bool mask of valid examples.

    Returns:
      ``[N]`` per-example values (0 where masked, or when no other valid example exists).

    References:
      Poole et al., ICML 2019, eq. (13); Cheng et al., ICML 2020, §4.
    """
    _check_gaussian(mu, logvar, b)
    valid = _valid(mu.shape[0], where)
    mu, logvar, b = _zero_masked_rows(valid, mu, logvar, b)
    log_q = _gaussian_log_likelihood_matrix(mu, logvar, b, valid)
    # Row i of log_q.T holds log q(b_i | a_j) over the conditioning examples j.
    lme, nonempty = _row_logmeanexp(log_q.T, _negative_mask(valid))
    values = jnp.diagonal(log_q) - lme
    return jnp.where(valid & nonempty, values, 0.0)
