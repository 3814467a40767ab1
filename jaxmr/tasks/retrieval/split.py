"""NCR's per-epoch clean/noisy split, run on the host between epochs (the task's epoch hook)."""

from __future__ import annotations

import jax
import numpy as np

from jaxmr.metrics.gmm_split import gmm_clean_probability
from jaxmr.metrics.split import split_quality
from jaxmr.tasks.retrieval.objectives import per_sample_losses


def training_pair_losses(nets, params, data, *, batch_size: int, margin: float, seed: int):
    """{net: [N_caps] per-sample losses} of every training pair as it is paired for training
    (`data.pairing.noisy_cap2img`), computed in batches of `batch_size` pairs in a seeded
    random order (the loss of a pair depends on its in-batch negatives, as in NCR)."""
    imgs, txts = nets.embed(params, data.train)
    n = len(data.pairing.noisy_cap2img)
    order = np.random.default_rng(seed).permutation(n)
    fn = jax.jit(per_sample_losses, static_argnames="margin")
    out = {}
    for net in nets.names:
        img = np.asarray(imgs[net])[data.pairing.noisy_cap2img]
        txt = np.asarray(txts[net])
        losses = np.zeros(n, np.float32)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:  # a lone pair has no negatives: give it the previous batch's
                idx = order[max(0, n - batch_size) :]
            losses[idx] = np.asarray(fn(img[idx], txt[idx], margin=margin))
        out[net] = losses
    return out


def split_from_losses(losses: np.ndarray, *, p_threshold: float, seed: int = 0):
    """(clean probability, predicted clean bool, gmm info) with NCR's fallback: when every
    probability exceeds the threshold, the 1% least likely pairs are called noisy."""
    prob, info = gmm_clean_probability(losses, seed=seed)
    threshold = p_threshold
    if prob.min() > threshold:
        threshold = np.sort(prob)[len(prob) // 100]
    return prob, prob > threshold, info


def make_split_hook(nets, data, loss_cfg, *, batch_size: int, seed: int):
    """Epoch hook: from epoch `warmup_epochs` on, each net's per-sample losses -> GMM ->
    `clean_prob_<net>` / `clean_pred_<net>` per pair (the partner trains on them). Returns
    clean fractions, GMM means/weights and, since the injected truth is known, split AUC,
    precision and recall per net (logged under `hook/`)."""

    def hook(state, sampler, epoch):
        if epoch < loss_cfg.warmup_epochs:
            return None
        losses = training_pair_losses(
            nets,
            state.params,
            data,
            batch_size=batch_size,
            margin=float(loss_cfg.margin),
            seed=seed + epoch,
        )
        out = {}
        truth_clean = ~data.pairing.is_noisy
        for net, loss in losses.items():
            prob, pred, info = split_from_losses(loss, p_threshold=float(loss_cfg.p_threshold))
            sampler.set_per_example(f"clean_prob_{net}", prob.astype(np.float32))
            sampler.set_per_example(f"clean_pred_{net}", pred.astype(np.float32))
            out[f"{net}/clean_fraction"] = float(pred.mean())
            out[f"{net}/gmm_means"] = info["means"]
            out[f"{net}/gmm_weights"] = info["weights"]
            if data.pairing.is_noisy.any():
                q = split_quality(truth_clean, clean_prob=prob, predicted_clean=pred)
                out.update({f"{net}/split_{k}": v for k, v in q.items()})
        return out

    return hook
