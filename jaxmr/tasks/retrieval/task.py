"""Image-text retrieval under noisy correspondence: the VSE++, InfoNCE and NCR-style
baselines in the one trainer (`config.task = "retrieval"`, `config.method`).

Data: `jaxmr.data.retrieval.load_retrieval_data` (the offline scenes benchmark or a local copy
of the SCAN/NCR layout) with the training pairs re-paired by the configured noise. Batches are
drawn over *captions* (NCR-style: per network, one batch of its partner's clean set and one of
the rest); each caption brings the features of the image it is paired with for
training (by index, `IndexedPairSampler`), so an image's captions share its features.

Methods (`config.method`):
  vsepp   hardest-negative triplet loss, one network, no noise handling;
  infonce symmetric InfoNCE, one network, no noise handling;
  ncr     NCR-style: warm-up on all pairs, then each epoch per-sample losses -> 2-component
          GMM -> clean probability; with co-teaching (default) two networks each trained on the
          other's split; soft margins from rectified labels (`objectives.ncr_loss`); each
          network draws its own labeled and unlabeled batches (`StreamPairSampler`) and,
          as NCR, trains one pass over its labeled set per co-training epoch
          (`loss.co_train_epoch`);
  disncl  DisNCL (`jaxmr.tasks.retrieval.disncl`): MII/MEI heads, similarity in the MII
          subspace, soft many-to-many targets, L_Dis and L_reg with an estimator phase; the
          same GMM split, computed on MII similarities.
Text encoder (`config.model.text_encoder`): `gru` (the family's Bi-GRU over the vocab) or
`minilm` (the frozen MiniLM tower's sentence embedding of each raw caption, computed once and
cached, then a trainable Linear; `text_features`).
Model selection: dev rSum (similarities averaged over the networks); the best checkpoint is
kept (`eval.py --checkpoint=best`).
"""

from __future__ import annotations

import jax
import numpy as np
import optax

from jaxmr.data.retrieval import load_retrieval_data
from jaxmr.data.samplers import IndexedPairSampler, StreamPairSampler
from jaxmr.models.pure import PureModule
from jaxmr.tasks.retrieval import disncl, objectives
from jaxmr.tasks.retrieval.evaluators import (
    DisentangleEvaluator,
    FactorEvaluator,
    RetrievalEvaluator,
    SplitEvaluator,
)
from jaxmr.tasks.retrieval.nets import Nets
from jaxmr.tasks.retrieval.split import make_split_hook
from jaxmr.tasks.retrieval.text_features import with_text_features
from jaxmr.train.optim import build_optimizer
from jaxmr.train.task import Phase, Task

METHODS = ("vsepp", "infonce", "ncr", "disncl")


def build_retrieval(config, *, data=None) -> Task:
    """The task of `config.method` on `config.data` (pass `data` to reuse loaded data)."""
    method = config.method
    if method not in METHODS:
        raise ValueError(f"config.method must be one of {METHODS}, got {method!r}")
    data = data if data is not None else load_retrieval_data(config.data)
    if config.model.get("text_encoder", "gru") == "minilm" and data.train.tokens.dtype.kind == "i":
        data = with_text_features(data, config.model.text_tower, cache_dir=config.data.cache_dir)
    splits = method in ("ncr", "disncl")
    co_teach = splits and bool(config.model.co_teaching)
    names = ("net_a", "net_b") if co_teach else ("net_a",)
    train = data.train
    disent = method == "disncl"
    nets = Nets(config.model, train.images.shape[-1], data.vocab_size, names, disentangled=disent)
    loss_cfg = config.loss
    optimizer = build_optimizer(config.optim, config.schedule, config.total_steps)
    if disent and config.model.get("mii_decorrelation", "none") == "exclusive":
        # the running moments of the exclusive residual are set by SGD steps, not Adam's
        optimizer = disncl.with_running_moments(
            optimizer, loss_cfg.get("exclusive_stat_rate", 0.02)
        )
    optimizers = {n: optimizer for n in names}

    est = None
    est_phase = None
    if disent:
        m = config.model
        est = PureModule(
            lambda rngs: disncl.Estimators(
                int(m.mii_dim),
                int(m.mei_dim),
                loss_cfg.reg,
                logvar_bound=float(loss_cfg.club_logvar_bound),
                rngs=rngs,
            )
        )
        est_groups = tuple(f"est_{n}" for n in names)
        for g in est_groups:
            optimizers[g] = optax.adam(float(loss_cfg.est_learning_rate))
        # After the encoder phases: it fits on the codes they computed (docs/disncl.md).
        est_phase = Phase(
            "est",
            est_groups,
            disncl.estimator_loss(est, names, loss_cfg),
            repeats=int(loss_cfg.est_repeats),
        )
    phases = []
    for net in names:
        carries = ()
        if method == "vsepp":
            fn = objectives.vsepp_loss(nets, net, loss_cfg)
        elif method == "infonce":
            fn = objectives.infonce_loss(nets, net, loss_cfg)
        else:
            partner = names[1 - names.index(net)] if co_teach else net
            if disent:
                fn = disncl.disncl_loss(nets, est, net, partner, loss_cfg)
                carries = (disncl.codes_carry_name(net),)
            else:
                fn = objectives.ncr_loss(nets, net, partner, loss_cfg)
        phases.append(Phase(net, (net,), fn, carries=carries))
    if est_phase is not None:
        phases.append(est_phase)

    pairs = {
        "tokens": train.tokens,
        "lengths": train.lengths,
        "img_index": np.asarray(data.pairing.noisy_cap2img, np.int32),
    }

    gathered = {"images": (train.images, "img_index")}

    def make_sampler(**kw):
        if method == "ncr":  # NCR's labeled and unlabeled loaders, per network
            streams = objectives.ncr_streams(names, co_train_epoch=loss_cfg.co_train_epoch)
            sampler = StreamPairSampler(pairs, gathered, streams=streams, **kw)
        else:
            sampler = IndexedPairSampler(pairs, gathered, **kw)
        if splits:  # before the first split every pair is "clean" with probability 1
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

    if disent and data.factors:
        evaluators.append(
            DisentangleEvaluator(
                "test_codes",
                nets,
                data.test,
                data.factors["test"],
                loss_cfg,
                every_steps=int(ev_cfg.dev_every_steps),
                seed=config.seed,
            )
        )

    def init_fn(key):
        params = nets.init(key)
        if est is not None:
            for i, n in enumerate(names):
                params[f"est_{n}"] = est.init(jax.random.fold_in(key, 100 + i))
        return params

    init_carry = None
    if disent:
        init_carry = lambda key: disncl.init_codes_carry(
            names, int(config.batch_size), int(config.model.mii_dim), int(config.model.mei_dim)
        )

    hook = None
    if splits:
        hook = make_split_hook(nets, data, loss_cfg, batch_size=config.batch_size, seed=config.seed)

    return Task(
        name="retrieval",
        init_fn=init_fn,
        optimizers=optimizers,
        phases=tuple(phases),
        predict_fn=predict_fn,
        evaluators=tuple(evaluators),
        epoch_hook=hook,
        init_carry=init_carry,
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
