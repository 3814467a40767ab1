"""Per-network training objectives of the retrieval baselines (VSE++, InfoNCE, NCR-style),
composed from `jaxmr.losses.contrastive`.

Each builder returns `loss_fn(params, batch, ctx) -> (loss, aux)` for one network's phase.
Scores are cosine similarities S = img @ txt.T of a batch of (possibly mismatched) pairs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmr.losses.contrastive import (
    ncr_label_prediction,
    ncr_soft_margin,
    symmetric_infonce_loss,
    triplet_hinge_loss,
)


def batch_scores(nets, params, net: str, batch) -> jax.Array:
    model = nets.bind(params, net)
    img = model.encode_images(batch["images"])
    txt = model.encode_texts(batch["tokens"], batch["lengths"])
    return img @ txt.T


def vsepp_loss(nets, net: str, loss_cfg):
    """VSE++: hardest-negative triplet loss summed over the batch (no noise handling)."""

    def loss_fn(params, batch, ctx):
        scores = batch_scores(nets, params, net, batch)
        per = triplet_hinge_loss(scores, margin=loss_cfg.margin, hardest_negative=True)
        return jnp.sum(per), {"mean_positive": jnp.mean(jnp.diagonal(scores))}

    return loss_fn


def infonce_loss(nets, net: str, loss_cfg):
    """Symmetric InfoNCE (CLIP) averaged over the batch (no noise handling)."""

    def loss_fn(params, batch, ctx):
        scores = batch_scores(nets, params, net, batch)
        per = symmetric_infonce_loss(scores, temperature=loss_cfg.temperature)
        return jnp.mean(per), {"mean_positive": jnp.mean(jnp.diagonal(scores))}

    return loss_fn


CO_TRAIN_EPOCHS = ("labeled_pass", "fixed")


def ncr_streams(names, *, co_train_epoch: str) -> dict[str, tuple]:
    """NCR's loaders as `StreamPairSampler` streams: network n trains on `l_<n>` (the pairs
    its partner's split calls clean) and `u_<n>` (the rest); each network its own order.

    `co_train_epoch="labeled_pass"`: `l_<n>` is a one-pass stream, so network n updates for
    ceil(|C| / batch) steps of an epoch and sits out the rest (NCR's `train` loops over
    `labeled_trainloader` once; the unlabeled loader restarts when exhausted). `"fixed"`: both
    networks update at every step of the trainer's `num_pairs // batch` step epoch."""
    if co_train_epoch not in CO_TRAIN_EPOCHS:
        raise ValueError(
            f"config.loss.co_train_epoch must be one of {CO_TRAIN_EPOCHS}, got {co_train_epoch!r}"
        )
    one_pass = co_train_epoch == "labeled_pass"
    out = {}
    for net in names:
        partner = names[1 - names.index(net)] if len(names) == 2 else net
        out[f"l_{net}"] = (f"clean_pred_{partner}", True, one_pass)
        out[f"u_{net}"] = (f"clean_pred_{partner}", False)
    return out


def _stream_scores(nets, params, net: str, batch, stream: str) -> jax.Array:
    sub = {k: batch[f"{stream}/{k}"] for k in ("images", "tokens", "lengths")}
    return batch_scores(nets, params, net, sub)


def ncr_loss(nets, net: str, partner: str, loss_cfg):
    """NCR-style training of `net`, split by `partner` (co-teaching; `partner == net` without),
    on the batches of `ncr_streams`: `l_<net>` (the partner's clean set C: its GMM probability
    w > p_threshold) and `u_<net>` (the rest, U), `batch_size` pairs each, as NCR's two loaders.

    Warm-up (epoch < loss.warmup_epochs, when C is every pair): the triplet loss with the MEAN
    over negatives (NCR's `mode="warmup"`). Then:
      labeled:   y = w + (1 - w) * pred_net(C batch)             (label rectification)
      unlabeled: y = (pred_net(U batch) + pred_partner(U batch)) / 2
                 (from loss.unlabeled_start_epoch; NCR: half of the co-training epochs)
    each trained with the hardest-negative triplet loss at soft margins alpha * s(y)
    (`ncr_soft_margin`), summed over its batch; the two losses are added. Labels come from
    stop-gradient scores (NCR predicts them in eval mode under no_grad). The unlabeled batch is
    encoded only once it is used (`lax.cond`).

    With `loss.co_train_epoch = "labeled_pass"` (`ncr_streams`) a step whose labeled batch is
    past the epoch's pass over C (`l_<net>/active` = 0) computes nothing and returns
    `aux["active"] = False`: the trainer leaves the network and its optimiser moments as they
    were (docs/retrieval.md §5).
    """
    margin = loss_cfg.margin
    lab, unl = f"l_{net}", f"u_{net}"

    def soft(y):
        return ncr_soft_margin(y, margin=margin, kind=loss_cfg.soft_margin)

    def unlabeled(params, batch):
        scores = _stream_scores(nets, params, net, batch, unl)
        y = ncr_label_prediction(jax.lax.stop_gradient(scores), margin=margin)
        if partner != net:
            other = _stream_scores(nets, params, partner, batch, unl)
            y = 0.5 * (y + ncr_label_prediction(jax.lax.stop_gradient(other), margin=margin))
        loss = jnp.sum(triplet_hinge_loss(scores, margin=soft(y)))
        return loss, jnp.mean(y)

    def skip(params, batch):
        return jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)

    gated = loss_cfg.co_train_epoch == "labeled_pass"

    def loss_fn(params, batch, ctx):
        if not gated:
            return train(params, batch, ctx)
        active = jnp.max(batch[f"{lab}/active"]) > 0.5
        shapes = jax.eval_shape(train, params, batch, ctx)
        idle = lambda p, b, c: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        loss, aux = jax.lax.cond(active, train, idle, params, batch, ctx)
        return loss, {**aux, "active": active}

    def train(params, batch, ctx):
        scores = _stream_scores(nets, params, net, batch, lab)
        warm = ctx.epoch < loss_cfg.warmup_epochs
        warm_loss = jnp.sum(triplet_hinge_loss(scores, margin=margin, hardest_negative=False))
        prob = batch[f"{lab}/clean_prob_{partner}"]
        pred_l = ncr_label_prediction(jax.lax.stop_gradient(scores), margin=margin)
        y_l = prob + (1.0 - prob) * pred_l
        loss_l = jnp.sum(triplet_hinge_loss(scores, margin=soft(y_l)))
        use_u = (~warm) & (ctx.epoch >= loss_cfg.unlabeled_start_epoch)
        loss_u, y_u_mean = jax.lax.cond(use_u, unlabeled, skip, params, batch)
        loss = jnp.where(warm, warm_loss, loss_l + loss_u)
        return loss, {
            "warmup": warm.astype(jnp.float32),
            "loss_labeled": loss_l,
            "loss_unlabeled": loss_u,
            "rectified_label_mean": jnp.mean(y_l),
            "unlabeled_label_mean": y_u_mean,
            "mean_positive": jnp.mean(jnp.diagonal(scores)),
        }

    return loss_fn


def per_sample_losses(img: jax.Array, txt: jax.Array, *, margin: float) -> jax.Array:
    """NCR's per-sample loss for the GMM split (`mode="eval_loss"`): the triplet loss with
    the mean over in-batch negatives, on a batch of codes [B, D] of pairs."""
    return triplet_hinge_loss(img @ txt.T, margin=margin, hardest_negative=False)
