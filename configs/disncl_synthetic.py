"""DisNCL on the offline scenes benchmark (embedded default: no download).

  python train.py --config=configs/disncl_synthetic.py --workdir=runs/disncl
  python eval.py  --config=configs/disncl_synthetic.py --workdir=runs/disncl --checkpoint=best

Same data keys, schedule and variants as configs/ncr_synthetic.py (`:smoke`, `:noise=`,
`:convention=`, `:size=`), plus `:ablation=` for the study:
  none      the full objective: soft targets, L_Dis, and I(s; x) minimised by L_reg
            (CLUB-sample) together with the exact exclusive residual: the MEI code x~
            without its `model.exclusive_k` = 12 (smoke: 3) canonical variates most
            correlated with the partner's MII code (CCA on running moments weighted by the
            clean probability), the MII code the exact linear residual of its head on the
            remaining variates (`model.mii_decorrelation="exclusive"`,
            `loss.exclusive_weighting="clean"`; the default since session 8)
  no_dis    without L_Dis and L_reg (matching on MII codes only; no decorrelation)
  no_reg    without anything that minimises I(s; x): no L_reg, no decorrelation
  no_club   without L_reg's CLUB term, the decorrelation kept
  no_mei_resid  without any decorrelation, L_reg's CLUB term kept (the default of session 5)
  hard      hard (identity, clean-weighted) targets instead of soft many-to-many ones
  joint     the soft targets of the first studies: one target matrix from the joint image +
            caption affinities, rows normalised to 1, lambda = 0.1 (`loss.soft_form="joint"`)
  affinity  joint soft targets whose neighbour mass is gated by absolute affinity
            (`loss.neighbour_gate="affinity"`, lambda = 1: a neighbour whose MII codes
            coincide with the pair's own counts as much as the annotated partner)
  mutual    joint soft targets whose only neighbour is one both modalities agree on
            (`loss.neighbour_gate="mutual"`, lambda = 1)
  directional  directional soft targets with every direction's neighbours from its own
            modality (`loss.neighbour_trusted="own"`), lambda = 0.1
  strong    L_Dis's conditional term and L_reg 20x / 10x stronger (cond_weight 2,
            lambda_reg 0.1): how much disentanglement costs retrieval
  decorr    the MII code exactly linearly decorrelated from the MEI code: s = L2(u - x B)
            with B the fitted least-squares regression of u on x
            (`model.mii_decorrelation="regress"`)
  predict   the MII code as each modality's linear prediction of the other's: s_m =
            L2(u_m C_m) with C_m the fitted least-squares regression of the partner's u on u_m
            over clean pairs (`model.mii_decorrelation="predict"`)
  mei_resid the MEI code exactly linearly decorrelated from the MII code: x = L2(a - s D),
            a = L2(W^x h + b), D the fitted least-squares regression of a on the
            stop-gradient s (`model.mei_decorrelation="regress"`, no MII-side removal); s is
            untouched. DisNCL's default in sessions 6-7
  excl      an exclusivity penalty on the MEI code: its squared clean-weighted correlations
            with the partner modality's stop-gradient MII code (`loss.mei_partner_weight=1`)
  excl_resid  the exclusive residual as first built (session 6): `model.exclusive_k` = 24
            (smoke: 6) and running moments over every annotated pair
            (`loss.exclusive_weighting="all"`); the study's rows at K = 16 set the key
  excl_all  the default's exclusive residual (same K) with moments over every annotated pair
            instead of clean-weighted ones (`loss.exclusive_weighting="all"`)
  excl_decorr  `excl` and `decorr` together: the MII code is the residual of its head on an
            MEI code pushed to carry no partner-predictable (shared) content
  full_emb  similarity (and the split) on the whole backbone code instead of the MII code
  single    one network trained on its own clean/noisy split, without co-teaching
            (`model.co_teaching=False`)
MII and MEI codes are 64-d on a 128-d backbone. Every choice and its reason: docs/disncl.md.
"""

from configs import ncr_synthetic
from configs.common import parse_arg

ABLATIONS = (
    "none",
    "no_dis",
    "no_reg",
    "no_club",
    "no_mei_resid",
    "hard",
    "affinity",
    "mutual",
    "joint",
    "directional",
    "strong",
    "decorr",
    "predict",
    "mei_resid",
    "excl",
    "excl_decorr",
    "excl_resid",
    "excl_all",
    "full_emb",
    "single",
)


def get_config(arg=None):
    a = parse_arg(
        arg, smoke=False, noise=0.4, convention="caption", size="default", ablation="none"
    )
    base = f"method=disncl,noise={a.noise},convention={a.convention},size={a.size}"
    config = ncr_synthetic.get_config(base + (",smoke" if a.smoke else ""))
    config.model.mii_dim = 16 if a.smoke else 64
    config.model.mei_dim = 16 if a.smoke else 64
    # The step's 94 MiB of temporaries reused without page faults (docs/performance.md); the
    # smoke size's small steps are slower with it (the setting is process-wide: tests too).
    config.host_allocator = "system" if a.smoke else "keep"
    if a.ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {a.ablation!r}")
    # The default's MII-side removal (retrieval_common: "exclusive"), at this benchmark's K.
    config.model.exclusive_k = 3 if a.smoke else 12
    if a.ablation in ("no_dis", "no_reg", "no_mei_resid", "mei_resid"):
        config.model.mii_decorrelation = "none"
    if a.ablation == "no_dis":
        config.loss.lambda_dis = 0.0
        config.loss.lambda_reg = 0.0
    elif a.ablation in ("no_reg", "no_club"):
        config.loss.lambda_reg = 0.0
    elif a.ablation == "hard":
        config.loss.targets = "hard"
    elif a.ablation == "joint":
        config.loss.soft_form = "joint"
        config.loss.neighbour_weight = 0.1
    elif a.ablation == "affinity":
        config.loss.soft_form = "joint"
        config.loss.neighbour_gate = "affinity"
        config.loss.neighbour_weight = 1.0
    elif a.ablation == "mutual":
        config.loss.soft_form = "joint"
        config.loss.neighbour_gate = "mutual"
        config.loss.neighbour_weight = 1.0
    elif a.ablation == "directional":
        config.loss.neighbour_trusted = "own"
        config.loss.neighbour_weight = 0.1
    elif a.ablation == "strong":
        config.loss.cond_weight = 2.0
        config.loss.lambda_reg = 0.1
    elif a.ablation == "decorr":
        config.model.mii_decorrelation = "regress"
    elif a.ablation == "predict":
        config.model.mii_decorrelation = "predict"
    elif a.ablation == "mei_resid":
        config.model.mei_decorrelation = "regress"
    elif a.ablation == "excl":
        config.loss.mei_partner_weight = 1.0
    elif a.ablation == "excl_decorr":
        config.loss.mei_partner_weight = 1.0
        config.model.mii_decorrelation = "regress"
    elif a.ablation == "excl_resid":
        config.model.exclusive_k = 6 if a.smoke else 24
        config.loss.exclusive_weighting = "all"
    elif a.ablation == "excl_all":
        config.loss.exclusive_weighting = "all"
    elif a.ablation == "full_emb":
        config.model.similarity = "full"
    elif a.ablation == "single":
        config.model.co_teaching = False
    return config
