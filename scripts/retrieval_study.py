r"""Noisy-correspondence retrieval study: DisNCL and its ablations against VSE++, InfoNCE and
NCR-style training on the offline scenes benchmark.

Trains every method of `METHODS` on every setting of `SETTINGS` (caption-level noise 0, 20,
40, 60 %; image-level noise 40 %) over several seeds, evaluates each run's best checkpoint
(by dev rSum) with `jaxmr.evaluate.evaluate` and writes

  WORKDIR/results.csv        one row per (setting, method, seed); columns in `CSV_FIELDS`
  WORKDIR/results.md         mean ± std over seeds per setting: rSum, R@1 both ways, semantic
                             rSum, leakage of exclusive factors, split AUC (of the best-dev
                             checkpoint; and of the splits training used: their mean and the
                             first, after warm-up), MI(MII; MEI)
  WORKDIR/summary.md         rSum, a row per method, a column per setting; "—(not run)" cells
  WORKDIR/rsum_vs_noise.png  rSum against the caption-level noise ratio, per method
  WORKDIR/runs/<setting>/<method>_s<seed>/  a normal training run (resumable) + result.json

  python scripts/retrieval_study.py --quick --workdir=runs/retrieval_quick
  python scripts/retrieval_study.py --workdir=runs/retrieval_study          # full grid
  python scripts/retrieval_study.py --workdir=runs/retrieval_study --methods=ncr,disncl \
      --settings=caption_0.4,caption_0.6 --seeds=0
  python scripts/retrieval_study.py --workdir=runs/retrieval_study --report_only
  python scripts/retrieval_study.py --workdir=runs/retrieval_study --reevaluate  # new metrics

A finished run is never retrained (its result.json is read back), so an interrupted study
resumes where it stopped and `--methods`/`--settings`/`--seeds` add to an existing study. A
run stopped by a signal (SIGTERM/SIGINT) keeps its checkpoint, writes no result and stops the
study; a run that fails otherwise is reported and the study goes on (exit status 1 at the end).
Every table is rewritten after each finished run.

Methods map to a config file and its argument: the baselines to configs/ncr_synthetic.py
(`method=vsepp|infonce|ncr`), DisNCL and its ablations to configs/disncl_synthetic.py
(`ablation=none|no_dis|no_reg|hard|joint|affinity|mutual|directional|strong|decorr|
predict|mei_resid|excl|excl_decorr|excl_resid|excl_all|full_emb|single`); the setting adds
`noise=` and `convention=`.

`--steps_scale=f` shortens (or lengthens) every run by multiplying its schedule in whole
epochs: the number of epochs, every `loss.*_epoch(s)` key (warm-up, unlabeled start, ...) and
the learning-rate decay boundaries, each rounded to whole epochs, at least one epoch where it
was non-zero, the unlabeled start no earlier than the end of warm-up, and at least one epoch
of training after every epoch-based switch. The shape of the schedule (warm-up, co-training,
decay) is thus kept, which overriding `total_steps` alone would not do (a short run would
never leave warm-up). `--set total_steps=N` does the latter when that is what is wanted.
`--quick` = vsepp, ncr, disncl at caption_0.4, seed 0, `--steps_scale=0.3` (3 epochs:
1 warm-up, unlabeled pairs from epoch 2, lr decay at epoch 2; NCR-style, whose default warms
up for 3 of its 11 epochs, gets 4: its second lr decay lands at epoch 3).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scripts.study_common import (  # noqa: E402  (needs ROOT on the path)
    mean_std,
    parse_set,
    plot_mean_std,
    read_results,
    run_jobs,
    set_xla_threads,
    write_csv,
)

# method -> (config module under configs/, argument). Order = row order of every table.
METHODS: dict[str, tuple[str, str]] = {
    "vsepp": ("ncr_synthetic", "method=vsepp"),
    "infonce": ("ncr_synthetic", "method=infonce"),
    "ncr": ("ncr_synthetic", "method=ncr"),
    "disncl": ("disncl_synthetic", "ablation=none"),
    "disncl_no_dis": ("disncl_synthetic", "ablation=no_dis"),
    "disncl_no_reg": ("disncl_synthetic", "ablation=no_reg"),
    "disncl_no_club": ("disncl_synthetic", "ablation=no_club"),
    "disncl_no_mei_resid": ("disncl_synthetic", "ablation=no_mei_resid"),
    "disncl_hard": ("disncl_synthetic", "ablation=hard"),
    "disncl_affinity": ("disncl_synthetic", "ablation=affinity"),
    "disncl_mutual": ("disncl_synthetic", "ablation=mutual"),
    "disncl_directional": ("disncl_synthetic", "ablation=directional"),
    "disncl_joint": ("disncl_synthetic", "ablation=joint"),
    "disncl_strong": ("disncl_synthetic", "ablation=strong"),
    "disncl_decorr": ("disncl_synthetic", "ablation=decorr"),
    "disncl_predict": ("disncl_synthetic", "ablation=predict"),
    "disncl_mei_resid": ("disncl_synthetic", "ablation=mei_resid"),
    "disncl_excl": ("disncl_synthetic", "ablation=excl"),
    "disncl_excl_decorr": ("disncl_synthetic", "ablation=excl_decorr"),
    "disncl_excl_resid": ("disncl_synthetic", "ablation=excl_resid"),
    "disncl_excl_all": ("disncl_synthetic", "ablation=excl_all"),
    "disncl_full_emb": ("disncl_synthetic", "ablation=full_emb"),
    "disncl_single": ("disncl_synthetic", "ablation=single"),
}
METHOD_NOTES = {
    "vsepp": "VSE++ (hardest-negative triplet, no noise handling)",
    "infonce": "symmetric InfoNCE",
    "ncr": "NCR-style (GMM split, co-teaching, soft margins)",
    "disncl": "DisNCL",
    "disncl_no_dis": "DisNCL without L_Dis and L_reg",
    "disncl_no_reg": "DisNCL without L_reg (no CLUB term, no decorrelation)",
    "disncl_no_club": "DisNCL without L_reg's CLUB term (the decorrelation kept)",
    "disncl_no_mei_resid": "DisNCL without any decorrelation (the default of session 5)",
    "disncl_hard": "DisNCL with hard targets instead of soft",
    "disncl_affinity": "DisNCL with soft targets gated by absolute affinity (lambda = 1)",
    "disncl_mutual": "DisNCL with soft targets on neighbours both modalities agree on (lambda = 1)",
    "disncl_directional": "DisNCL with directional soft targets from each modality's own codes",
    "disncl_joint": "DisNCL with the first studies' joint soft targets",
    "disncl_strong": "DisNCL with the conditional term 20x and L_reg 10x stronger",
    "disncl_decorr": "DisNCL with the MII code linearly decorrelated from the MEI code",
    "disncl_predict": "DisNCL with the MII code as each modality's linear prediction of the other",
    "disncl_mei_resid": "DisNCL with the MEI code linearly decorrelated (sessions 6-7 default)",
    "disncl_excl": "DisNCL with the MEI code's correlation with the partner's MII code penalised",
    "disncl_excl_decorr": "DisNCL with an exclusive MEI code and the MII code decorrelated from it",
    "disncl_excl_resid": "DisNCL's exclusive residual as first built (K = 24, every pair)",
    "disncl_excl_all": "DisNCL with the exclusive residual's moments over every pair",
    "disncl_full_emb": "DisNCL with similarity on the whole embedding instead of the MII code",
    "disncl_single": "DisNCL with one network on its own split (no co-teaching)",
}
# setting -> (noise convention, noise ratio). Order = column order.
SETTINGS: dict[str, tuple[str, float]] = {
    "caption_0.0": ("caption", 0.0),
    "caption_0.2": ("caption", 0.2),
    "caption_0.4": ("caption", 0.4),
    "caption_0.6": ("caption", 0.6),
    "image_0.4": ("image", 0.4),
}
DEFAULT_SEEDS = (0, 1, 2)
QUICK = dict(methods=("vsepp", "ncr", "disncl"), settings=("caption_0.4",), seeds=(0,))
QUICK_STEPS_SCALE = 0.3

# CSV column -> key of the metrics dict of `jaxmr.evaluate.evaluate`.
METRIC_KEYS = {
    "rsum": "test/rsum",
    "i2t_r1": "test/i2t/R@1",
    "i2t_r5": "test/i2t/R@5",
    "i2t_r10": "test/i2t/R@10",
    "t2i_r1": "test/t2i/R@1",
    "t2i_r5": "test/t2i/R@5",
    "t2i_r10": "test/t2i/R@10",
    "srsum": "test/srsum",
    "leak_image": "test/leak/image_mean",
    "leak_text": "test/leak/text_mean",
    "mcc_shared": "test/mcc_shared",
    "split_auc": "split/net_a/auc",
    "split_precision": "split/net_a/precision",
    "split_recall": "split/net_a/recall",
    "split_auc_b": "split/net_b/auc",
    "mi_mii_mei": "test/mi_mii_mei",
    "mi_mii_mei_mlp": "test/mi_mii_mei_mlp",
}
# Split AUC of the splits training actually used (the epoch hook's `hook/net_a/split_auc`,
# one per co-training epoch, read from metrics.jsonl): the first (after warm-up), their mean,
# their minimum, and the one of the epoch that produced the best-dev checkpoint.
HOOK_FIELDS = ("train_split_auc_first", "train_split_auc_mean", "train_split_auc_min",
               "train_split_auc_at_best")  # fmt: skip
CSV_FIELDS = (
    ["method", "setting", "convention", "noise", "seed", "steps", "best_step"]
    + ["seconds", "train_seconds", "eval_seconds"]
    + list(METRIC_KEYS)
    + list(HOOK_FIELDS)
    + ["config", "arg", "failed"]
)
# (column, header) of results.md; MI only where some run reports it.
TABLE_COLUMNS = (
    ("rsum", "rSum"),
    ("i2t_r1", "i2t R@1"),
    ("t2i_r1", "t2i R@1"),
    ("srsum", "semantic rSum"),
    ("leak_image", "leak R² image"),
    ("leak_text", "leak R² text"),
    ("split_auc", "split AUC"),
    ("train_split_auc_mean", "train-split AUC mean"),
    ("train_split_auc_first", "train-split AUC first"),
    ("mi_mii_mei", "MI(MII; MEI)"),
    ("mi_mii_mei_mlp", "MI(MII; MEI) MLP"),
)


class StudyError(RuntimeError):
    """A run that cannot start (e.g. its config file does not exist yet)."""


class Stopped(RuntimeError):
    """A run stopped by a signal: its checkpoint resumes it, no result is written."""


def config_module(name: str):
    """configs.<name>, imported only when a run needs it (DisNCL's may not exist yet)."""
    try:
        return importlib.import_module(f"configs.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"configs.{name}":
            raise
        raise StudyError(
            f"configs/{name}.py does not exist in {ROOT}: the methods "
            f"{[m for m, (c, _) in METHODS.items() if c == name]} need it"
        ) from None


def run_arg(method: str, setting: str, *, size: str = "") -> str:
    """The `get_config` argument of one run, e.g. `method=ncr,noise=0.4,convention=caption`."""
    convention, ratio = SETTINGS[setting]
    arg = f"{METHODS[method][1]},noise={ratio},convention={convention}"
    if size == "smoke":
        arg += ",smoke"
    elif size:
        arg += f",size={size}"
    return arg


def _steps_per_epoch(config) -> int:
    from configs.retrieval_common import epochs_to_steps
    from jaxmr.data.scenes import SIZES

    if config.data.source != "scenes":
        raise StudyError(f"--steps_scale needs the scenes benchmark, not {config.data.source!r}")
    n_caps = SIZES[config.data.scenes.size]["train"] * 5
    return epochs_to_steps(1, n_caps, config.batch_size)


def scale_schedule(config, scale: float) -> None:
    """Multiplies the schedule by `scale` in whole epochs (see the module docstring)."""
    if scale == 1.0:
        return
    if scale <= 0:
        raise StudyError(f"--steps_scale must be > 0, got {scale}")
    spe = _steps_per_epoch(config)

    def ep(n):
        return max(1, int(round(n * scale))) if n > 0 else 0

    keys = [  # epoch counts (not e.g. loss.co_train_epoch, a mode name)
        k
        for k in config.loss
        if k.endswith(("_epoch", "_epochs")) and isinstance(config.loss[k], int)
    ]
    for k in keys:
        config.loss[k] = ep(config.loss[k])
    if "warmup_epochs" in keys and "unlabeled_start_epoch" in keys:
        config.loss.unlabeled_start_epoch = max(
            config.loss.unlabeled_start_epoch, config.loss.warmup_epochs
        )
    decay = tuple(ep(d / spe) * spe for d in config.schedule.get("decay_steps", ()) or ())
    if decay:
        config.schedule.decay_steps = decay
    last_switch = max([int(config.loss[k]) for k in keys] + [d // spe for d in decay] + [0])
    epochs = max(ep(config.total_steps / spe), last_switch + 1)
    config.total_steps = epochs * spe


def make_config(job: dict):
    config = config_module(METHODS[job["method"]][0]).get_config(job["arg"])
    config.seed = job["seed"]
    scale_schedule(config, job["steps_scale"])
    config.schedule.keep_checkpoints = 1  # the best checkpoint is kept apart
    config.update_from_flattened_dict(job["overrides"])
    return config


def training_task(task):
    """`task` without the evaluators that would only run once, after the last step (test
    protocol, leakage probes, split quality): `evaluate` runs them on the best checkpoint, so
    running them on the last one too would only cost time (~40 s a run on 2 busy cores).
    Periodic evaluators (dev rSum, which picks the best checkpoint) stay."""
    best = task.best_metric or ""
    keep = [e for e in task.evaluators if e.every_steps > 0 or best.startswith(f"{e.name}/")]
    return dataclasses.replace(task, evaluators=tuple(keep))


def hook_split_auc(workdir: str, best_step: int | None) -> dict:
    """`HOOK_FIELDS` of a run from its metrics.jsonl ({} when it logged no split): the AUC of
    net a's clean probability against the injected truth for every split the epoch hook
    computed (the split the next epoch trains with). "at_best" is the split that the epoch
    ending at the best-dev step trained with (the last hook row at or before that step's
    epoch start)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    rows = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "hook/net_a/split_auc" in r:
                rows.append((int(r["step"]), float(r["hook/net_a/split_auc"])))
    if not rows:
        return {}
    rows = sorted(dict(rows).items())  # a resumed run may log an epoch twice
    aucs = [a for _, a in rows]
    out = {
        "train_split_auc_first": round(aucs[0], 4),
        "train_split_auc_mean": round(float(np.mean(aucs)), 4),
        "train_split_auc_min": round(min(aucs), 4),
    }
    if best_step is not None:
        used = [a for s, a in rows if s < int(best_step)]
        if used:
            out["train_split_auc_at_best"] = round(used[-1], 4)
    return out


def metric_columns(metrics: dict) -> dict:
    """The CSV's metric columns of an evaluation (`METRIC_KEYS`, wherever DisNCL's MI is)."""
    row = {col: round(metrics[key], 4) for col, key in METRIC_KEYS.items() if key in metrics}
    for col in ("mi_mii_mei", "mi_mii_mei_mlp"):  # wherever DisNCL's evaluator logs them
        mi = [v for k, v in sorted(metrics.items()) if k.endswith(f"/{col}")]
        if col not in row and mi:
            row[col] = round(mi[0], 4)
    return row


def reevaluate(job: dict, row: dict, result_path: str) -> dict:
    """`--reevaluate`: a finished run's best checkpoint evaluated again by today's
    evaluators (metrics added since it ran), its row rewritten. Refused, naming the keys, when
    today's config for the run differs from the one it trained with (`record.check_resume`)."""
    from jaxmr.evaluate import evaluate
    from jaxmr.train import record

    config = make_config(job)
    record.check_resume(job["workdir"], config)
    t0 = time.perf_counter()
    metrics = evaluate(config, job["workdir"], checkpoint="best")
    row = {k: v for k, v in row.items() if k != "reused"}
    row |= metric_columns(metrics)
    row["metrics"] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    row["eval_seconds"] = round(time.perf_counter() - t0, 1)
    with open(result_path, "w") as f:
        json.dump(row, f, indent=1)
    row["reused"] = True
    return row


def run_one(job: dict) -> dict:
    """Trains (or reads back) one run, evaluates its best checkpoint, returns its CSV row."""
    set_xla_threads(job["jobs"])
    result_path = os.path.join(job["workdir"], "result.json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            row = json.load(f)
        if row.get("arg") != job["arg"]:
            print(f"warning: {result_path} was run with {row.get('arg')!r}, not {job['arg']!r}")
        row["reused"] = True
        if HOOK_FIELDS[0] not in row:  # rows written before these columns existed
            row |= hook_split_auc(job["workdir"], row.get("best_step"))
        if job.get("reevaluate"):
            row = reevaluate(job, row, result_path)
        return row
    from jaxmr.evaluate import evaluate
    from jaxmr.tasks import build_task
    from jaxmr.train import loop

    config = make_config(job)
    os.makedirs(job["workdir"], exist_ok=True)
    t0 = time.perf_counter()
    out = loop.train_and_evaluate(training_task(build_task(config)), config, job["workdir"])
    t1 = time.perf_counter()
    if out.get("preempted") or out.get("step") != config.total_steps:
        raise Stopped(f"{job['workdir']}: stopped at step {out.get('step')} by a signal")
    metrics = evaluate(config, job["workdir"], checkpoint="best")
    t2 = time.perf_counter()
    convention, ratio = SETTINGS[job["setting"]]
    row = {
        "method": job["method"],
        "setting": job["setting"],
        "convention": convention,
        "noise": ratio,
        "seed": job["seed"],
        "steps": int(config.total_steps),
        "best_step": metrics.get("step"),
        "seconds": round(t2 - t0, 1),
        "train_seconds": round(t1 - t0, 1),
        "eval_seconds": round(t2 - t1, 1),
        "config": f"configs/{METHODS[job['method']][0]}.py",
        "arg": job["arg"],
    }
    row |= metric_columns(metrics)
    row |= hook_split_auc(job["workdir"], metrics.get("step"))
    # Every scalar of eval/metrics.json, so later tables need no retraining (not in the CSV).
    row["metrics"] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    if not np.isfinite(row.get("rsum", float("nan"))):
        row["failed"] = "no finite test rSum"
    with open(result_path, "w") as f:
        json.dump(row, f, indent=1)
    return row


def _cell(runs: list[dict], col: str, digits: int) -> str:
    return mean_std((r.get(col) for r in runs), digits) or "—"


def _digits(col: str) -> int:
    return 1 if col in ("rsum", "srsum") or col.startswith(("i2t_", "t2i_")) else 3


def _methods_in(rows) -> list[str]:
    extra = sorted({r["method"] for r in rows} - set(METHODS))
    return [m for m in METHODS if any(r["method"] == m for r in rows)] + extra


def _settings_in(rows) -> list[str]:
    extra = sorted({r["setting"] for r in rows} - set(SETTINGS))
    return [s for s in SETTINGS if any(r["setting"] == s for r in rows)] + extra


def markdown_tables(rows: list[dict]) -> str:
    """One table per setting: mean ± std over seeds of the `TABLE_COLUMNS` metrics."""
    out = []
    for setting in _settings_in(rows):
        sub = [r for r in rows if r["setting"] == setting]
        cols = [(c, h) for c, h in TABLE_COLUMNS if any(r.get(c) is not None for r in sub)]
        conv, ratio = sub[0].get("convention"), sub[0].get("noise")
        out += [f"### {setting}: {conv}-level noise, ratio {ratio}", ""]
        out.append("| method | seeds | " + " | ".join(h for _, h in cols) + " | steps | s/run |")
        out.append("|" + "---|" * (len(cols) + 4))
        for method in _methods_in(sub):
            runs = [r for r in sub if r["method"] == method]
            failed = sum("failed" in r for r in runs)
            seeds = f"{len(runs)}" + (f" ({failed} failed)" if failed else "")
            cells = [_cell(runs, c, _digits(c)) for c, _ in cols]
            steps = "/".join(str(s) for s in sorted({r["steps"] for r in runs}))
            secs = np.mean([r["seconds"] for r in runs])
            out.append(
                f"| {method} | {seeds} | " + " | ".join(cells) + f" | {steps} | {secs:.0f} |"
            )
        out.append("")
    return "\n".join(out)


def summary_table(rows: list[dict], metric: str = "rsum", n_seeds: int = len(DEFAULT_SEEDS)) -> str:
    """A row per method, a column per setting (the whole grid); cells without a finished run
    read "—(not run)", cells with fewer than `n_seeds` seeds say how many they have."""
    methods = list(METHODS) + [m for m in _methods_in(rows) if m not in METHODS]
    settings = list(SETTINGS) + [s for s in _settings_in(rows) if s not in SETTINGS]
    out = ["| method | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for method in methods:
        cells = []
        for setting in settings:
            runs = [r for r in rows if r["method"] == method and r["setting"] == setting]
            cell = mean_std((r.get(metric) for r in runs), _digits(metric))
            if cell is None:
                cell = "—(failed)" if runs else "—(not run)"
            elif len(runs) != n_seeds:
                cell += f" (n={len(runs)})"
            cells.append(cell)
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot_rsum_vs_noise(rows: list[dict], path: str) -> bool:
    """rSum (mean ± std over seeds) against the caption-level noise ratio, per method."""
    sub = [r for r in rows if r.get("convention") == "caption" and r.get("rsum") is not None]
    if not sub:
        return False
    ratios = sorted({r["noise"] for r in sub})
    curves = {
        method: {x: [r["rsum"] for r in sub if r["method"] == method and r["noise"] == x]
                 for x in ratios}
        for method in _methods_in(sub)
    }  # fmt: skip
    plot_mean_std(
        path,
        curves,
        xs=ratios,
        xlabel="caption-level noise ratio",
        ylabel="test rSum (mean ± std over seeds)",
        title="Offline scenes benchmark, best checkpoint by dev rSum",
    )
    return True


def write_outputs(rows: list[dict], workdir: str, n_seeds: int = len(DEFAULT_SEEDS)) -> None:
    write_csv(os.path.join(workdir, "results.csv"), rows, CSV_FIELDS)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(markdown_tables(rows))
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write(f"Test rSum, mean ± std over seeds (n = {n_seeds} unless marked)\n\n")
        f.write(summary_table(rows, n_seeds=n_seeds))
        f.write("\n" + "\n".join(f"- {m}: {METHOD_NOTES[m]}" for m in METHODS) + "\n")
    plot_rsum_vs_noise(rows, os.path.join(workdir, "rsum_vs_noise.png"))


def all_results(workdir: str) -> list[dict]:
    order_m = {m: i for i, m in enumerate(METHODS)}
    order_s = {s: i for i, s in enumerate(SETTINGS)}
    rows = read_results(workdir)
    for r in rows:
        if HOOK_FIELDS[0] not in r:  # rows written before these columns existed
            run_dir = os.path.join(workdir, "runs", r["setting"], f"{r['method']}_s{r['seed']}")
            r |= hook_split_auc(run_dir, r.get("best_step"))
    rows.sort(key=lambda r: (order_s.get(r["setting"], 99), order_m.get(r["method"], 99),
                             r["setting"], r["method"], r["seed"]))  # fmt: skip
    return rows


def _pick(value: str, known, what: str) -> list[str]:
    names = value.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; known: {list(known)}")
    return names


def build_jobs(args) -> list[dict]:
    methods = _pick(args.methods, METHODS, "methods") if args.methods else None
    settings = _pick(args.settings, SETTINGS, "settings") if args.settings else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    scale = args.steps_scale
    if args.quick:
        methods = methods or list(QUICK["methods"])
        settings = settings or list(QUICK["settings"])
        seeds = seeds or list(QUICK["seeds"])
        scale = scale or QUICK_STEPS_SCALE
    overrides = parse_set(args.set)
    jobs = []
    for setting in settings or SETTINGS:
        for method in methods or METHODS:
            for seed in seeds or DEFAULT_SEEDS:
                jobs.append(
                    {
                        "method": method,
                        "setting": setting,
                        "seed": seed,
                        "arg": run_arg(method, setting, size=args.size),
                        "steps_scale": scale or 1.0,
                        "overrides": overrides,
                        "workdir": os.path.join(
                            os.path.abspath(args.workdir), "runs", setting, f"{method}_s{seed}"
                        ),
                        "jobs": args.jobs,
                        "reevaluate": args.reevaluate,
                    }
                )
    return jobs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", default="runs/retrieval_study")
    p.add_argument("--quick", action="store_true", help="vsepp, ncr, disncl at caption_0.4, seed 0")
    p.add_argument("--methods", default="", help=f"comma list from {list(METHODS)}")
    p.add_argument("--settings", default="", help=f"comma list from {list(SETTINGS)}")
    p.add_argument("--seeds", default="", help="comma list (default 0,1,2; quick: 0)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    p.add_argument(
        "--steps_scale",
        type=float,
        default=0.0,
        help=f"multiply the schedule in whole epochs (default 1; quick {QUICK_STEPS_SCALE})",
    )
    p.add_argument("--size", default="", help="benchmark size: smoke | default | study")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run, after --steps_scale (e.g. data.cache_dir=/tmp/c)",
    )
    p.add_argument(
        "--report_only", action="store_true", help="rewrite the outputs from finished runs"
    )
    p.add_argument(
        "--reevaluate",
        action="store_true",
        help="evaluate finished runs' best checkpoints again (metrics added since they ran)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    n_seeds = len(args.seeds.split(",")) if args.seeds else len(DEFAULT_SEEDS)
    if args.report_only:
        rows = all_results(args.workdir)
        write_outputs(rows, args.workdir, n_seeds)
        print(summary_table(rows, n_seeds=n_seeds))
        return 0
    jobs = build_jobs(args)
    print(f"{len(jobs)} runs -> {args.workdir}", flush=True)
    t0 = time.perf_counter()
    failures: list[str] = []
    stopped: list[str] = []
    state = {"done": 0}

    def on_done(job, row):
        state["done"] += 1
        rsum = row.get("rsum", float("nan"))
        how = "read back" if row.pop("reused", False) else f"{row['seconds']:.0f}s"
        print(
            f"[{state['done']}/{len(jobs)}] {job['setting']} {job['method']} s{job['seed']}: "
            f"rSum {rsum:.1f}  {how}  (elapsed {time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
        write_outputs(all_results(args.workdir), args.workdir, n_seeds)

    def on_error(job, exc):
        state["done"] += 1
        name = f"{job['setting']} {job['method']} s{job['seed']}"
        if isinstance(exc, Stopped):
            stopped.append(name)
            print(f"stopped: {exc}; the study stops here", file=sys.stderr, flush=True)
            return False
        failures.append(f"{name}: {exc}")
        if isinstance(exc, StudyError):
            print(f"error: {name}: {exc}", file=sys.stderr, flush=True)
        else:
            print(f"error: {name}:", file=sys.stderr, flush=True)
            traceback.print_exception(exc, file=sys.stderr)
        return True

    run_jobs(run_one, jobs, workers=args.jobs, on_done=on_done, on_error=on_error)
    rows = all_results(args.workdir)
    write_outputs(rows, args.workdir, n_seeds)
    print(summary_table(rows, n_seeds=n_seeds))
    print(f"study wall time {time.perf_counter() - t0:.0f}s", flush=True)
    if failures or stopped:
        print(f"{len(failures)} failed, {len(stopped)} stopped:", file=sys.stderr)
        for line in failures + stopped:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
