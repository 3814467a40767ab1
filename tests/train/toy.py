"""Tiny tasks that exercise the trainer contract (not methods).

`build_toy`: two groups, an estimator phase then a main phase, an epoch hook.
`build_pairs_toy`: a noisy-correspondence-shaped task: 5 captions per image drawn by index,
two co-trained networks, an estimator phase run k times, carried state (a running average),
and an epoch hook that splits pairs by a per-sample loss with a 2-component GMM.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs.common import base_schedule
from jaxmr.data.samplers import IndexedPairSampler
from jaxmr.metrics.gmm_split import gmm_clean_probability
from jaxmr.train.task import Evaluator, Phase, Task


def toy_config(**overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(
        dict(
            task="toy",
            seed=0,
            total_steps=6,
            batch_size=8,
            num_devices=1,
            data=dict(n=32, nan_epoch=-1, noise=0.4),
            model=dict(est_repeats=1),
            schedule=base_schedule().to_dict(),
            prefetch=0,
        )
    )
    config.schedule.log_every_steps = 1
    config.schedule.checkpoint_every_steps = 2
    config.update_from_flattened_dict(overrides)
    return config


def build_toy(config) -> Task:
    """Group `b` tracks the batch mean of x (phase `est`), group `a` tracks b (phase `main`)."""
    x = np.arange(config.data.n, dtype=np.float32)
    seen = []

    nan_epoch = config.data.nan_epoch

    def est_loss(params, batch, ctx):
        loss = jnp.mean((params["b"]["v"] - batch["x"]) ** 2) / 2
        if nan_epoch >= 0:  # poison the loss from epoch `nan_epoch` on
            loss = jnp.where(ctx.epoch >= nan_epoch, jnp.nan, loss)
        return loss, {"w_mean": jnp.mean(batch["w"])}

    def main_loss(params, batch, ctx):
        return (params["a"]["v"] - params["b"]["v"]) ** 2 / 2, {}

    def epoch_hook(state, loader, epoch):
        seen.append(epoch)
        loader.set_per_example("w", np.full(loader.num_examples, float(epoch), np.float32))

    return Task(
        name="toy",
        init_fn=lambda key: {"a": {"v": jnp.zeros(())}, "b": {"v": jnp.zeros(())}},
        optimizers={"a": optax.sgd(0.5), "b": optax.sgd(0.5)},
        phases=(
            Phase("est", ("b",), est_loss, repeats=int(config.model.est_repeats)),
            Phase("main", ("a",), main_loss),
        ),
        predict_fn=lambda params, batch: {"z": batch["x"] * params["a"]["v"]},
        train_arrays={"x": x},
        epoch_hook=epoch_hook,
        info={"epochs_seen": seen},
    )


class _FitEvaluator(Evaluator):
    """Mean squared matching error of net `a` on clean pairs (lower is better)."""

    def __init__(self, ims, caps, every_steps):
        self.name, self.every_steps = "fit", every_steps
        self.ims, self.caps = ims, caps

    def run(self, params):
        w = np.asarray(params["a"]["w"])
        err = np.mean((self.caps @ w - self.ims[np.arange(len(self.caps)) // 5]) ** 2)
        return {"err": float(err), "neg_err": -float(err)}


def pairs_data(n_img: int = 24, dim: int = 3, noise: float = 0.4, seed: int = 0):
    """Images [n_img, dim], 5 captions per image (image + noise), a fraction `noise` of captions
    re-paired with random other images; returns (ims, caps, cap2img_noisy, clean)."""
    rng = np.random.default_rng(seed)
    ims = rng.normal(size=(n_img, dim)).astype(np.float32)
    cap2img = np.arange(5 * n_img) // 5
    caps = (ims[cap2img] + 0.05 * rng.normal(size=(5 * n_img, dim))).astype(np.float32)
    noisy = cap2img.copy()
    chosen = rng.choice(5 * n_img, int(noise * 5 * n_img), replace=False)
    noisy[chosen] = (cap2img[chosen] + rng.integers(1, n_img, len(chosen))) % n_img
    return ims, caps, noisy.astype(np.int32), noisy == cap2img


def build_pairs_toy(config) -> Task:
    """Two linear nets `a`, `b` map captions to images, each trained on the pairs the OTHER
    net's split calls clean (co-teaching); an estimator group `est` fits the mean code (run
    `est_repeats` times per step); a carried running average of the loss (`loss_ema`)."""
    ims, caps, cap2img, clean = pairs_data(noise=config.data.noise, seed=config.seed)
    dim = ims.shape[1]
    hooks = []

    def init_fn(key):
        ka, kb = jax.random.split(key)
        return {
            "a": {"w": jnp.eye(dim) + 0.1 * jax.random.normal(ka, (dim, dim))},
            "b": {"w": jnp.eye(dim) + 0.1 * jax.random.normal(kb, (dim, dim))},
            "est": {"m": jnp.zeros((dim,))},
        }

    def per_sample(w, batch):
        return jnp.sum((batch["cap"] @ w - batch["img"]) ** 2, axis=-1)

    def net_loss(net, other):
        def loss_fn(params, batch, ctx):
            # Warm-up on all pairs for one epoch, then weight by the other net's split.
            weight = jnp.where(ctx.epoch < 1, 1.0, batch[f"clean_prob_{other}"])
            per = per_sample(params[net]["w"], batch)
            loss = jnp.sum(weight * per) / jnp.maximum(jnp.sum(weight), 1e-6)
            aux = {"weight_mean": jnp.mean(weight)}
            if net == "a":
                aux["carry"] = {"loss_ema": 0.9 * ctx.carry["loss_ema"] + 0.1 * loss}
            return loss, aux

        return loss_fn

    def est_loss(params, batch, ctx):
        code = jax.lax.stop_gradient(batch["cap"] @ params["a"]["w"])
        return jnp.mean((params["est"]["m"] - code) ** 2), {}

    def make_sampler(**kw):
        sampler = IndexedPairSampler(
            {"cap": caps, "img_index": cap2img, "clean": clean.astype(np.float32)},
            {"img": (ims, "img_index")},
            **kw,
        )
        for net in ("a", "b"):
            sampler.set_per_example(f"clean_prob_{net}", np.ones(len(caps), np.float32))
        return sampler

    def predict_fn(params, batch):
        return {f"loss_{n}": per_sample(params[n]["w"], batch) for n in ("a", "b")}

    def epoch_hook(state, sampler, epoch):
        hooks.append(epoch)
        if epoch < 1:
            return None
        all_pairs = {"cap": caps, "img": ims[cap2img]}
        losses = jax.device_get(jax.jit(predict_fn)(state.params, all_pairs))
        out = {}
        for net in ("a", "b"):
            prob, gmm = gmm_clean_probability(np.asarray(losses[f"loss_{net}"]))
            sampler.set_per_example(f"clean_prob_{net}", prob.astype(np.float32))
            out[f"clean_fraction_{net}"] = float(np.mean(prob > 0.5))
            out[f"gmm_means_{net}"] = gmm["means"]
            out[f"split_accuracy_{net}"] = float(np.mean((prob > 0.5) == clean))
        return out

    return Task(
        name="pairs_toy",
        init_fn=init_fn,
        optimizers={g: optax.adam(0.05) for g in ("a", "b", "est")},
        phases=(
            Phase("est", ("est",), est_loss, repeats=int(config.model.est_repeats)),
            Phase("a", ("a",), net_loss("a", "b"), carries=("loss_ema",)),
            Phase("b", ("b",), net_loss("b", "a")),
        ),
        predict_fn=predict_fn,
        init_carry=lambda key: {"loss_ema": jnp.zeros(())},
        make_sampler=make_sampler,
        epoch_hook=epoch_hook,
        evaluators=(_FitEvaluator(ims, caps, every_steps=5),),
        best_metric="fit/neg_err",
        info={"hooks": hooks, "clean": clean},
    )
