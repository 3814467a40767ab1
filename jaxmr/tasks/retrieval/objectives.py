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


def ncr_loss(nets, net: str, partner: str, loss_cfg):
    """NCR-style training of `net`, split by `partner` (co-teaching; `partner == net` without).

    Warm-up (epoch < loss.warmup_epochs): the triplet loss with the MEAN over negatives on all
    pairs. Then, with the partner's clean set C (its GMM probability w > p_threshold, carried
    per pair as `clean_pred_<partner>`) as NCR's labeled set and the rest as its unlabeled set:
      labeled:   y = w + (1 - w) * pred_net(C)             (label rectification, stop-grad)
      unlabeled: y = (pred_net(U) + pred_partner(U)) / 2   (from loss.unlabeled_start_epoch)
    each trained with the hardest-negative triplet loss at soft margins alpha * s(y)
    (`ncr_soft_margin`), each set's negatives drawn from the same set, losses summed.
    NCR draws the labeled and unlabeled batches from separate loaders; here one batch is split
    by mask (see docs/retrieval.md).
    """

    def loss_fn(params, batch, ctx):
        scores = batch_scores(nets, params, net, batch)
        warm = ctx.epoch < loss_cfg.warmup_epochs
        warm_loss = jnp.sum(
            triplet_hinge_loss(scores, margin=loss_cfg.margin, hardest_negative=False)
        )
        clean = batch[f"clean_pred_{partner}"] > 0.5
        prob = batch[f"clean_prob_{partner}"]
        sg = jax.lax.stop_gradient(scores)
        pred_l = ncr_label_prediction(sg, margin=loss_cfg.margin, where=clean)
        y_l = prob + (1.0 - prob) * pred_l
        loss_l = jnp.sum(
            triplet_hinge_loss(
                scores,
                margin=ncr_soft_margin(y_l, margin=loss_cfg.margin, kind=loss_cfg.soft_margin),
                where=clean,
            )
        )
        noisy = ~clean
        if partner != net:
            other = jax.lax.stop_gradient(batch_scores(nets, params, partner, batch))
            y_u = 0.5 * (
                ncr_label_prediction(sg, margin=loss_cfg.margin, where=noisy)
                + ncr_label_prediction(other, margin=loss_cfg.margin, where=noisy)
            )
        else:
            y_u = ncr_label_prediction(sg, margin=loss_cfg.margin, where=noisy)
        loss_u = jnp.sum(
            triplet_hinge_loss(
                scores,
                margin=ncr_soft_margin(y_u, margin=loss_cfg.margin, kind=loss_cfg.soft_margin),
                where=noisy,
            )
        )
        use_u = (ctx.epoch >= loss_cfg.unlabeled_start_epoch) & (jnp.sum(noisy) > 1)
        train_loss = loss_l + jnp.where(use_u, loss_u, 0.0)
        loss = jnp.where(warm, warm_loss, train_loss)
        n_clean = jnp.maximum(jnp.sum(clean), 1)
        return loss, {
            "warmup": warm.astype(jnp.float32),
            "loss_labeled": loss_l,
            "loss_unlabeled": loss_u,
            "labeled_fraction": jnp.mean(clean.astype(jnp.float32)),
            "rectified_label_mean": jnp.sum(jnp.where(clean, y_l, 0.0)) / n_clean,
            "mean_positive": jnp.mean(jnp.diagonal(scores)),
        }

    return loss_fn


def per_sample_losses(img: jax.Array, txt: jax.Array, *, margin: float) -> jax.Array:
    """NCR's per-sample loss for the GMM split (`mode="eval_loss"`): the triplet loss with
    the mean over in-batch negatives, on a batch of codes [B, D] of pairs."""
    return triplet_hinge_loss(img @ txt.T, margin=margin, hardest_negative=False)
