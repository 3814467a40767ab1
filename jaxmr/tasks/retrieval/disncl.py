"""DisNCL: disentangled noisy-correspondence learning, as reconstructed in docs/disncl.md.

Per network (parameter group `net_*`, a `DisNCLNet`) and its estimator group (`est_*`: a
CLUB conditional q(x_m | s_m) or a density-ratio discriminator per modality):

  matching   two-way soft cross-entropy of S = s_v s_t^T / tau against targets Y built from
             intra-modal MII affinities and the clean probability w (stop-gradient);
             `loss.targets`: "soft" (many-to-many), "hard" (identity rows, loss weighted by w)
             or "ncr_margin" (NCR's hardest-negative triplet with soft margins)
  L_S        -I(s_v; s_t) by clean-weighted InfoNCE  +  I(s_m; m | other) by w ||s_v - s_t||^2
  L_X        -I(x_m; h_m) by InfoNCE against the stop-gradient backbone code h_m
  L_Dis      gamma L_S + (1 - gamma) L_X
  L_reg      I(s_m; x_m): CLUB-sample upper bound under the estimator's q (`loss.reg="club"`)
             or the discriminator's loss through gradient reversal ("adversarial")
  total      matching + lambda_dis L_Dis + lambda_reg L_reg
             (+ decor_fit_weight * the least-squares fit of the coefficients B of
             s = L2(u - x B) when `model.mii_decorrelation="regress"`, or of C in
             s_m = L2(u_m C_m), the prediction of the partner's u, when "predict":
             docs/disncl.md; with "exclusive", DisNCL's default since session 8, + the
             running moments' update term `exclusive_moments_loss`, over every pair or
             weighted by w (`loss.exclusive_weighting`), applied by plain SGD at
             `loss.exclusive_stat_rate`: an exact exponential moving average,
             `with_running_moments`)
Phase order: the encoder phases first (`net_a`, `net_b`), each under the estimator as it was at
the start of the step, each writing its stop-gradient codes {s, x} per modality to the carry
(`codes_<net>`); then the estimator phase (run `loss.est_repeats` times per step) fits q (or the
discriminator) on those codes and updates nothing else. The networks' forward pass is thus
computed once per step, inside the encoder phases (docs/disncl.md, "CLUB-sample in its own
phase"). The clean probability comes from the epoch hook's GMM on per-sample losses in the MII
subspace, from the partner network when co-teaching. Every term is logged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxmr.losses.contrastive import (
    directional_soft_targets,
    ncr_soft_margin,
    soft_correspondence_targets,
    soft_target_cross_entropy,
    symmetric_infonce_loss,
    triplet_hinge_loss,
)
from jaxmr.losses.decorrelation import (
    cross_correlation,
    least_squares_loss,
    linear_residual,
    residual_cross_covariance,
)
from jaxmr.losses.estimators import discriminator_objective
from jaxmr.losses.gradient_reversal import gradient_reversal
from jaxmr.losses.mi_bounds import (
    club_estimator_loss,
    club_sample_upper_bound,
    infonce_lower_bound,
)
from jaxmr.models.critics import Discriminator, GaussianConditional

REGS = ("club", "adversarial")
TARGETS = ("soft", "hard", "ncr_margin")
MODALITIES = ("image", "text")


class Estimators(nnx.Module):
    """Per modality: CLUB's q(x|s) (`reg="club"`) or a discriminator of (s, x) pairs."""

    def __init__(
        self, mii_dim: int, mei_dim: int, reg: str, *, logvar_bound: float, rngs: nnx.Rngs
    ):
        if reg not in REGS:
            raise ValueError(f"config.loss.reg must be one of {REGS}, got {reg!r}")
        self.reg = reg
        for m in MODALITIES:
            if reg == "club":
                mod = GaussianConditional(
                    mii_dim, mei_dim, hidden=(64,), logvar_bound=logvar_bound, rngs=rngs
                )
            else:
                mod = Discriminator(mii_dim + mei_dim, hidden=(64,), rngs=rngs)
            setattr(self, m, mod)


def _codes(nets, params, net, batch):
    model = nets.bind(params, net)
    return (
        model,
        model.image_codes(batch["images"]),
        model.text_codes(batch["tokens"], batch["lengths"]),
    )


def _clean_prob(batch, partner, warm):
    w = batch[f"clean_prob_{partner}"]
    return jnp.where(warm, jnp.ones_like(w), w)


def codes_carry_name(net: str) -> str:
    """The carried entry through which encoder phase `net` hands its codes to the estimator."""
    return f"codes_{net}"


def init_codes_carry(names, batch_size: int, mii_dim: int, mei_dim: int) -> dict:
    """Zero codes of the global batch, one entry per network (`codes_carry_name`): the carried
    state the encoder phases overwrite every step before the estimator phase reads it."""
    dims = {"s": mii_dim, "x": mei_dim}
    one = {
        f"{m}_{k}": jnp.zeros((batch_size, d), jnp.float32)
        for m in MODALITIES
        for k, d in dims.items()
    }
    return {codes_carry_name(n): dict(one) for n in names}


def estimator_loss(est, names, loss_cfg):
    """The estimator phase: fit each net's q(x_m|s_m) (or discriminator) on the stop-gradient
    codes the encoder phases of this step left in the carry (no forward pass of the nets)."""

    def loss_fn(params, batch, ctx):
        total, aux = 0.0, {}
        for net in names:
            codes = ctx.carry[codes_carry_name(net)]
            e = est.bind(params[f"est_{net}"])
            for m in MODALITIES:
                s, x = codes[f"{m}_s"], codes[f"{m}_x"]
                if loss_cfg.reg == "club":
                    mu, logvar = getattr(e, m)(s)
                    val = jnp.mean(club_estimator_loss(mu, logvar, x))
                else:
                    key = jax.random.fold_in(ctx.key, MODALITIES.index(m))
                    val, _ = discriminator_objective(getattr(e, m), s, x, key=key)
                aux[f"{net}/{m}_est_loss"] = val
                total = total + val
        return total, aux

    return loss_fn


def _residual_fit(model, codes, target: str, inputs: str, coefficients):
    """The least-squares fit of code `target` on code `inputs` (stop-gradient: only the
    coefficients `coefficients(heads)` = (coef, intercept) get its gradient), summed over the
    modalities, and the squared in-batch cross-covariance that the residual keeps."""
    fit, xcov = 0.0, 0.0
    for m, c in zip(MODALITIES, codes, strict=True):
        coef, intercept = coefficients(model.heads(m))
        y, x = jax.lax.stop_gradient(c[target]), jax.lax.stop_gradient(c[inputs])
        fit = fit + least_squares_loss(y, x, coef, intercept)
        r = linear_residual(y, x, jax.lax.stop_gradient(coef))
        xcov = xcov + jnp.sum(residual_cross_covariance(r, x) ** 2)
    return fit, xcov


def with_running_moments(optimizer, rate: float):
    """`optimizer` for every parameter of a network except the running moments of
    `model.mii_decorrelation="exclusive"` (leaves named `stat_*`) and its gate (`gate_*`):
    those take plain SGD steps of size `rate` and 1 on the gradient of
    `exclusive_moments_loss`, (P - T), i.e. P <- (1 - rate) P + rate T, an exact exponential
    moving average of the batch's moments T, and the gate set to its target. They live in the
    network's parameters so that every forward pass (evaluation included) uses them; the
    global gradient clipping of `optimizer` sees only its own parameters."""
    rate = float(rate)
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"config.loss.exclusive_stat_rate must be in (0, 1], got {rate!r}")

    def label(path, _):
        name = str(getattr(path[-1], "key", path[-1]))
        if name.startswith(("stat_", "gate_")):
            return name.split("_")[0]
        return "main"

    return optax.multi_transform(
        {"main": optimizer, "stat": optax.sgd(rate), "gate": optax.sgd(1.0)},
        lambda params: jax.tree_util.tree_map_with_path(label, params),
    )


def _batch_moments(x, u, p, weights):
    """The batch values of the running moments: plain means over the pairs (as the runs before
    `loss.exclusive_weighting` computed them), or means under the normalised `weights`."""
    if weights is None:
        n = x.shape[0]
        mean, moment = (lambda a: jnp.mean(a, 0)), (lambda a, b: a.T @ b / n)
    else:
        q = weights.astype(x.dtype)
        q = q / jnp.maximum(jnp.sum(q), 1e-6)
        mean, moment = (lambda a: q @ a), (lambda a, b: (a * q[:, None]).T @ b)
    return {
        "stat_count": jnp.ones((), x.dtype),
        "stat_mean_x": mean(x),
        "stat_mean_u": mean(u),
        "stat_mean_p": mean(p),
        "stat_xx": moment(x, x),
        "stat_pp": moment(p, p),
        "stat_xp": moment(x, p),
        "stat_xu": moment(x, u),
    }


def exclusive_moments_loss(model, img, txt, gate_target, weights=None):
    """sum over modalities of 1/2 ||P - T||^2 over the running moments P (`stat_*`) of the
    heads and their batch values T (stop-gradient: x the raw MEI code, u the MII head's
    output, p the partner modality's MII code of the same pairs, every annotated pair
    counted), plus 1/2 (gate_on - gate_target)^2. Its gradient on P is P - T; the codes get
    none. With `weights` (one per pair, e.g. the clean probability) every batch moment is
    the weighted one, sum_i w_i a_i b_i^T / sum_i w_i: the partner-correlation that picks the
    shared canonical variates is then read from the pairs believed clean, not diluted by the
    mismatched ones (`loss.exclusive_weighting="clean"`). Returns (loss, logs): the gap, the
    canonical correlations at the boundary (the k-th kept and the first removed-from-s
    variate) and the mean squared in-batch correlation of s with x~ (0 when the removal is
    exact on the batch)."""
    total, logs = 0.0, {}
    for m, own, other in (("image", img, txt), ("text", txt, img)):
        heads = model.heads(m)
        sg = jax.lax.stop_gradient
        x, u, p = sg(own["x_raw"]), sg(own["u"]), sg(other["s"])
        target = _batch_moments(x, u, p, None if weights is None else sg(weights))
        for k, t in target.items():
            total = total + 0.5 * jnp.sum((getattr(heads, k)[...] - t) ** 2)
        total = total + 0.5 * (heads.gate_on[...] - gate_target) ** 2
        k = heads.exclusive_k
        corr = own["corr"]
        if k > 0:
            logs[f"excl_corr_kept_{m}"] = corr[k - 1]
        logs[f"excl_corr_removed_{m}"] = corr[k]
        rho = cross_correlation(sg(own["s"]), sg(own["x"]))
        logs[f"excl_s_x_corr_sq_{m}"] = jnp.mean(rho**2)
    return total, logs


def _trusted_modality(name: str) -> str:
    """`loss.neighbour_trusted` as `directional_soft_targets`' `trusted` (images are a)."""
    table = {"own": "own", "image": "a", "text": "b"}
    if name not in table:
        raise ValueError(
            f"config.loss.neighbour_trusted must be one of {list(table)}, got {name!r}"
        )
    return table[name]


def mei_partner_penalty(model, img, txt, w):
    """Exclusivity of the MEI codes: sum over modalities m of the mean over x_m's dimensions j
    of sum_k corr_w(x_m,j, s_partner,k)^2, the clean-weighted (w) correlations with the
    partner modality's stop-gradient MII code. x_m is recomputed from the stop-gradient
    backbone code h_m (and stop-gradient s_m where the MEI code is a residual on it), so only
    the MEI head is trained by this term; the backbone and the MII code are not reshaped by
    it. Zero when no dimension of x_m is linearly correlated with the partner's code."""
    total = 0.0
    for m, own, other in (("image", img, txt), ("text", txt, img)):
        h, s = jax.lax.stop_gradient(own["h"]), jax.lax.stop_gradient(own["s"])
        _, x = model.heads(m).mei_code(h, s)
        rho = cross_correlation(x, jax.lax.stop_gradient(other["s"]), weights=w)
        total = total + jnp.mean(jnp.sum(rho**2, axis=-1))
    return total


def disncl_loss(nets, est, net: str, partner: str, loss_cfg):
    """The encoder phase of network `net` (clean probabilities from `partner`)."""

    def loss_fn(params, batch, ctx):
        model, img, txt = _codes(nets, params, net, batch)
        warm = ctx.epoch < loss_cfg.warmup_epochs
        w = _clean_prob(batch, partner, warm)
        sv, st = img["s"], txt["s"]
        sim_v, sim_t = (sv, st) if model.similarity == "mii" else (img["h"], txt["h"])
        scores = sim_v @ sim_t.T
        tau = loss_cfg.temperature
        # matching
        if loss_cfg.targets == "soft" and loss_cfg.soft_form == "directional":
            if loss_cfg.target_mass not in ("weighted", "normalised"):
                raise ValueError(
                    "config.loss.target_mass must be 'weighted' or 'normalised', "
                    f"got {loss_cfg.target_mass!r}"
                )
            y_vt, y_tv = directional_soft_targets(
                jax.lax.stop_gradient(sim_v @ sim_v.T),
                jax.lax.stop_gradient(sim_t @ sim_t.T),
                w,
                neighbour_weight=loss_cfg.neighbour_weight,
                temperature=loss_cfg.target_temperature,
                clean_neighbours=loss_cfg.neighbour_clean,
                normalise=loss_cfg.target_mass == "normalised",
                trusted=_trusted_modality(loss_cfg.neighbour_trusted),
            )
            per = soft_target_cross_entropy(scores, y_vt, temperature=tau, col_targets=y_tv)
            mass = 0.5 * (jnp.sum(y_vt, axis=1) + jnp.sum(y_tv, axis=1))
            match = jnp.sum(per) / jnp.maximum(jnp.sum(mass), 1.0)
        elif loss_cfg.targets == "soft":
            if loss_cfg.soft_form != "joint":
                raise ValueError(
                    "config.loss.soft_form must be 'joint' or 'directional', "
                    f"got {loss_cfg.soft_form!r}"
                )
            aff_v = jax.lax.stop_gradient(sim_v @ sim_v.T)
            aff_t = jax.lax.stop_gradient(sim_t @ sim_t.T)
            y = soft_correspondence_targets(
                aff_v,
                aff_t,
                w,
                neighbour_weight=loss_cfg.neighbour_weight,
                temperature=loss_cfg.target_temperature,
                gate=loss_cfg.neighbour_gate,
            )
            match = jnp.mean(soft_target_cross_entropy(scores, y, temperature=tau))
        elif loss_cfg.targets == "hard":
            per = symmetric_infonce_loss(scores, temperature=tau)
            match = jnp.sum(w * per) / jnp.maximum(jnp.sum(w), 1.0)
        elif loss_cfg.targets == "ncr_margin":
            margins = ncr_soft_margin(w, margin=loss_cfg.margin, kind=loss_cfg.soft_margin)
            match = jnp.mean(triplet_hinge_loss(scores, margin=margins))
        else:
            raise ValueError(f"config.loss.targets must be one of {TARGETS}")
        # L_S: maximise I(s; other modality) (clean-weighted InfoNCE), minimise
        # I(s_m; m | other) (squared distance of clean pairs' MII codes).
        wsum = jnp.maximum(jnp.sum(w), 1.0)
        s_nce = jnp.sum(w * symmetric_infonce_loss(sv @ st.T, temperature=tau)) / wsum
        s_cond = jnp.sum(w * jnp.sum((sv - st) ** 2, axis=-1)) / wsum
        l_s = s_nce + loss_cfg.cond_weight * s_cond
        # L_X: the exclusive code keeps what the backbone code carries (InfoNCE bound).
        l_x = 0.0
        for m, c in zip(MODALITIES, (img, txt), strict=True):
            crit = model.critic_scores(c["x"], jax.lax.stop_gradient(c["h"]), m)
            l_x = l_x - jnp.mean(infonce_lower_bound(crit))
        l_dis = loss_cfg.gamma * l_s + (1.0 - loss_cfg.gamma) * l_x
        # L_reg: I(s_m; x_m) under the estimator as it was at the start of the step (frozen
        # here; the estimator phase runs after the encoder phases).
        e = est.bind(params[f"est_{net}"])
        l_reg = 0.0
        for i, (m, c) in enumerate(zip(MODALITIES, (img, txt), strict=True)):
            key = jax.random.fold_in(ctx.key, i)
            if loss_cfg.reg == "club":
                mu, logvar = getattr(e, m)(c["s"])
                l_reg = l_reg + jnp.mean(club_sample_upper_bound(mu, logvar, c["x"], key=key))
            else:
                d_loss, _ = discriminator_objective(
                    getattr(e, m), gradient_reversal(c["s"]), gradient_reversal(c["x"]), key=key
                )
                l_reg = l_reg + d_loss  # reversed: the encoders maximise the discriminator's loss
        loss = match + loss_cfg.lambda_dis * l_dis + loss_cfg.lambda_reg * l_reg
        extra = {}
        # The fitted coefficients stay at their start (C = I, B = 0: s as without them)
        # during warm-up when `loss.decor_after_warmup`: fitted on codes not yet aligned
        # across modalities, C is ~0 plus noise and s a random projection (docs/disncl.md).
        fit_on = 1.0
        if loss_cfg.get("decor_after_warmup", True):
            fit_on = 1.0 - warm.astype(jnp.float32)
        fit_weight = loss_cfg.get("decor_fit_weight", 1.0) * fit_on
        if model.decorrelation == "predict":
            # Fit C_m: the partner's u from this modality's u, over the batch's pairs weighted
            # by their clean probability (stop-gradient codes: only C_m and its intercept).
            fit = 0.0
            uv, ut = jax.lax.stop_gradient(img["u"]), jax.lax.stop_gradient(txt["u"])
            for m, (inp, tgt) in zip(MODALITIES, ((uv, ut), (ut, uv)), strict=True):
                coef, intercept = model.heads(m).decor()
                fit = fit + least_squares_loss(tgt, inp, coef, intercept, weights=w)
                # ridge toward the identity: directions of u with little variance (whose
                # least-squares coefficients are noisy and, unpenalised, amplified) stay as
                # they are; high-variance ones reach their regression
                eye = jnp.eye(coef.shape[0], dtype=coef.dtype)
                fit = fit + loss_cfg.get("decor_ridge", 0.0) * jnp.sum((coef - eye) ** 2)
            loss = loss + fit_weight * fit
            extra = {"decor_fit": fit}
        elif model.decorrelation == "regress":
            # Fit the coefficients of s = L2(u - x B) by least squares on stop-gradient codes
            # (only B and its intercept get this gradient); log the in-batch cross-covariance
            # of the residual with x that remains.
            fit, xcov = _residual_fit(model, (img, txt), "u", "x", lambda h: h.decor())
            loss = loss + fit_weight * fit
            extra = {"decor_fit": fit, "decor_xcov_sq": xcov}
        elif model.decorrelation == "exclusive":
            # The running moments of x, u and the partner's s (an exact moving average by the
            # optimiser's SGD step on this term's gradient), and the removal's gate: 0 during
            # warm-up when `loss.decor_after_warmup` (codes not yet aligned across modalities
            # give arbitrary canonical directions), else 1.
            weighting = loss_cfg.get("exclusive_weighting", "all")
            if weighting not in ("all", "clean"):
                raise ValueError(
                    f"config.loss.exclusive_weighting must be 'all' or 'clean', got {weighting!r}"
                )
            gap, extra = exclusive_moments_loss(
                model, img, txt, fit_on, weights=w if weighting == "clean" else None
            )
            loss = loss + gap
            extra["excl_moment_gap"] = gap
        if model.mei_decorrelation == "regress":
            # Fit D of x = L2(a - s D), a = L2(W^x h + b), by least squares on stop-gradient
            # codes (only D and its intercept get this gradient), from the first step (s is
            # untouched by it, so there is nothing to protect during warm-up); log the
            # residual's cross-covariance with s that remains.
            fit, xcov = _residual_fit(model, (img, txt), "a", "s", lambda h: h.mei_decor())
            loss = loss + loss_cfg.get("mei_decor_fit_weight", 1.0) * fit
            extra.update({"mei_decor_fit": fit, "mei_decor_xcov_sq": xcov})
        partner_weight = loss_cfg.get("mei_partner_weight", 0.0)
        if partner_weight:
            excl = mei_partner_penalty(model, img, txt, w)
            loss = loss + partner_weight * excl
            extra["mei_partner_corr"] = excl
        codes = {
            f"{m}_{k}": jax.lax.stop_gradient(c[k])
            for m, c in zip(MODALITIES, (img, txt), strict=True)
            for k in ("s", "x")
        }
        return loss, {
            "carry": {codes_carry_name(net): codes},
            "match": match,
            "L_S": l_s,
            "L_S_infonce": s_nce,
            "L_S_cond": s_cond,
            "L_X": l_x,
            "L_Dis": l_dis,
            "L_reg": l_reg,
            "clean_weight_mean": jnp.mean(w),
            "warmup": warm.astype(jnp.float32),
            "mean_positive": jnp.mean(jnp.diagonal(scores)),
            **extra,
        }

    return loss_fn
