"""Objectives for auxiliary estimators (CLUB's q(b|a), density-ratio discriminators, MI
critics), for use as the loss of an estimator *phase* of the trainer.

Variational MI upper bounds (CLUB) and adversarial regularisers need a second network fitted to
the *current* codes while the encoders are trained against it. In jaxmr that is two phases of
one jitted step (`jaxmr.train.task.Phase`): an estimator phase that owns only the estimator's
parameter group (optionally run k times per step) and minimises one of these objectives on
stop-gradient codes, then the encoder phase, which sees the estimator's fresh parameters and
does not update them::

    def est_loss(params, batch, ctx):
        s, x = jax.lax.stop_gradient(encode(params, batch))
        return club_objective(bind_q(params["club"]), s, x)

    def enc_loss(params, batch, ctx):
        s, x = encode(params, batch)
        mu, logvar = bind_q(params["club"])(s)
        return task_loss(...) + beta * club_upper_bound(mu, logvar, x).mean(), {}

    phases = (Phase("club", ("club",), est_loss, repeats=k), Phase("enc", ("enc",), enc_loss))

Each objective is `objective(module, a, b, *, key=None, where=None) -> (loss, metrics)`, where
`module` is any callable (e.g. an nnx module bound to the estimator's parameters).
For an adversarial regulariser use ``Discriminator`` with ``discriminator_objective`` and, in
the encoder loss, the discriminator loss on ``gradient_reversal(codes)``.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxmr.losses import mi_bounds

# objective(module, a, b, *, key, where) -> (scalar loss to minimise, metrics dict)
Objective = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def _mean(values: jax.Array, where: jax.Array | None) -> jax.Array:
    if where is None:
        return jnp.mean(values)
    where = jnp.asarray(where, dtype=bool)
    return jnp.sum(jnp.where(where, values, 0.0)) / jnp.maximum(jnp.sum(where), 1)


def club_objective(module, a, b, *, key=None, where=None):
    """Negative log-likelihood of q(b|a) (a ``GaussianConditional``); also reports vCLUB."""
    del key
    mu, logvar = module(a)
    nll = _mean(mi_bounds.club_estimator_loss(mu, logvar, b, where=where), where)
    club = _mean(mi_bounds.club_upper_bound(mu, logvar, b, where=where), where)
    return nll, {"club_nll": nll, "club_upper_bound": club}


def discriminator_objective(module, a, b, *, key, where=None):
    """Logistic loss of a ``Discriminator`` on joint pairs [a_i; b_i] vs shuffled [a_i; b_π(i)].

    At its optimum the logit is log p(a, b) / p(a)p(b), the density ratio whose mean is I(a; b)
    (reported as ``ratio_mi``; biased while the discriminator is not converged).
    """
    if key is None:
        raise ValueError("discriminator_objective needs a PRNG key to shuffle the pairs")
    perm = mi_bounds.marginal_partner_indices(key, a.shape[0], where=where)
    pos = module(jnp.concatenate([a, b], axis=-1))
    neg = module(jnp.concatenate([a, b[perm]], axis=-1))
    loss = _mean(jax.nn.softplus(-pos) + jax.nn.softplus(neg), where)
    accuracy = _mean(0.5 * ((pos > 0).astype(jnp.float32) + (neg < 0).astype(jnp.float32)), where)
    return loss, {"discriminator_accuracy": accuracy, "ratio_mi": _mean(pos, where)}


_CRITIC_BOUNDS = ("infonce", "nwj", "jsd", "dv")


def critic_objective(bound: str) -> Objective:
    """Objective that maximises an MI lower bound over a critic returning ``[N, N]`` scores.

    Args:
      bound: ``"infonce"``, ``"nwj"``, ``"jsd"`` (trained with JSD, reported as NWJ) or
        ``"dv"`` (plain gradient; the EMA variant needs carried state, use
        ``donsker_varadhan_lower_bound`` directly).

    Returns:
      An objective reporting ``mi_estimate``.
    """
    if bound not in _CRITIC_BOUNDS:
        raise ValueError(f"bound must be one of {_CRITIC_BOUNDS}, got {bound!r}")

    def objective(module, a, b, *, key=None, where=None):
        del key
        scores = module(a, b)
        if bound == "infonce":
            estimate = _mean(mi_bounds.infonce_lower_bound(scores, where=where), where)
        elif bound == "nwj":
            estimate = _mean(mi_bounds.nwj_lower_bound(scores, where=where), where)
        elif bound == "jsd":
            estimate, _ = mi_bounds.jsd_mi_estimate(scores, where=where)
        else:
            estimate, _ = mi_bounds.donsker_varadhan_lower_bound(scores, where=where)
        return -estimate, {"mi_estimate": estimate}

    return objective
