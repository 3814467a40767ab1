"""Image-text retrieval under noisy correspondence: the VSE++, InfoNCE and NCR-style
baselines in the one trainer (`config.task = "retrieval"`, `config.method`).

Data: `jaxmr.data.retrieval.load_retrieval_data` (the offline scenes benchmark or a local copy
of the SCAN/NCR layout) with the training pairs re-paired by the configured noise. Batches are
drawn over *captions*; each caption brings the features of the image it is paired with for
training (by index, `IndexedPairSampler`), so an image's captions share its features.

Methods (`config.method`):
  vsepp   hardest-negative triplet loss, one network, no noise handling;
  infonce symmetric InfoNCE, one network, no noise handling;
  ncr     NCR-style: warm-up on all pairs, then each epoch per-sample losses -> 2-component
          GMM -> clean probability; with co-teaching (default) two networks each trained on the
          other's split; soft margins from rectified labels (`objectives.ncr_loss`).
Model selection: dev rSum (similarities averaged over the networks); the best checkpoint is
kept (`eval.py --checkpoint=best`).
"""

from __future__ import annotations

import numpy as np

from jaxmr.data.retrieval import load_retrieval_data
from jaxmr.data.samplers import IndexedPairSampler
from jaxmr.tasks.retrieval import objectives
from jaxmr.tasks.retrieval.evaluators import FactorEvaluator, RetrievalEvaluator, SplitEvaluator
from jaxmr.tasks.retrieval.nets import Nets
from jaxmr.tasks.retrieval.split import make_split_hook
from jaxmr.train.optim import build_optimizer
from jaxmr.train.task import Phase, Task

METHODS = ("vsepp", "infonce", "ncr")


def build_retrieval(config, *, data=None) -> Task:
    """The task of `config.method` on `config.data` (pass `data` to reuse loaded data)."""
    method = config.method
    if method not in METHODS:
        raise ValueError(f"config.method must be one of {METHODS}, got {method!r}")
    data = data if data is not None else load_retrieval_data(config.data)
    co_teach = method == "ncr" and bool(config.model.co_teaching)
    names = ("net_a", "net_b") if co_teach else ("net_a",)
    train = data.train
    nets = Nets(config.model, train.images.shape[-1], data.vocab_size, names)
    loss_cfg = config.loss

    phases = []
    for net in names:
        if method == "vsepp":
            fn = objectives.vsepp_loss(nets, net, loss_cfg)
        elif method == "infonce":
            fn = objectives.infonce_loss(nets, net, loss_cfg)
        else:
            partner = names[1 - names.index(net)] if co_teach else net
            fn = objectives.ncr_loss(nets, net, partner, loss_cfg)
        phases.append(Phase(net, (net,), fn))

    pairs = {
        "tokens": train.tokens,
        "lengths": train.lengths,
        "img_index": np.asarray(data.pairing.noisy_cap2img, np.int32),
    }

    def make_sampler(**kw):
        sampler = IndexedPairSampler(pairs, {"images": (train.images, "img_index")}, **kw)
        if method == "ncr":  # before the first split every pair is "clean" with probability 1
            for net in names:
                ones = np.ones(len(train.tokens), np.float32)
                sampler.set_per_example(f"clean_prob_{net}", ones)
                sampler.set_per_example(f"clean_pred_{net}", ones)
        return sampler

    def predict_fn(params, batch):
        out = {}
        for net in names:
            m = nets.bind(params, net)
            out[f"img_{net}"] = m.encode_images(batch["images"])
            out[f"txt_{net}"] = m.encode_texts(batch["tokens"], batch["lengths"])
        return out

    ev_cfg = config.evals
    evaluators = [
        RetrievalEvaluator("dev", nets, data.dev, every_steps=int(ev_cfg.dev_every_steps))
    ]
    if data.factors:
        evaluators.append(
            FactorEvaluator(
                "test", nets, data.test, data.factors["test"], every_steps=0, seed=config.seed
            )
        )
    else:
        evaluators.append(
            RetrievalEvaluator(
                "test", nets, data.test, every_steps=0, n_folds=int(ev_cfg.test_folds)
            )
        )
    if data.pairing.is_noisy.any():
        evaluators.append(
            SplitEvaluator("split", nets, data, loss_cfg, batch_size=config.batch_size)
        )

    hook = None
    if method == "ncr":
        hook = make_split_hook(nets, data, loss_cfg, batch_size=config.batch_size, seed=config.seed)

    optimizer = build_optimizer(config.optim, config.schedule, config.total_steps)
    return Task(
        name="retrieval",
        init_fn=nets.init,
        optimizers={n: optimizer for n in names},
        phases=tuple(phases),
        predict_fn=predict_fn,
        evaluators=tuple(evaluators),
        epoch_hook=hook,
        make_sampler=make_sampler,
        best_metric="dev/rsum",
        best_mode="max",
        info={
            "variant": method,
            "nets": names,
            "data": data,
            "noise": f"{data.pairing.convention}-level {data.pairing.realised_ratio:.3f}",
        },
    )
