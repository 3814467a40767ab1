r"""Identifiability study: the implicit decoder (iIVAE) against explicit-decoder models.

Trains every model of `MODELS` on every setting of the chosen grid over several seeds, scores
the learned codes against the known factors (strong and weak MCC, DCI with Lasso, MIG; SAP
on the shapes benchmark) and writes

  WORKDIR/results.csv          one row per (benchmark, setting, model, seed)
  WORKDIR/results.md           mean ± std tables per setting
  WORKDIR/summary.md           strong and weak MCC, a row per model, a column per setting
  WORKDIR/mcc_vs_depth.png     strong MCC against mixing depth per model (d = D = 5)
  WORKDIR/mcc_vs_target_dim.png  strong MCC against target dimension (depth 3, d = 5)
  WORKDIR/runs/<setting>/<model>_s<seed>/   a normal training run (resumable) + result.json

  python scripts/identifiability_study.py --quick --workdir=runs/study_quick   # ~4 min, 2 cores
  python scripts/identifiability_study.py --workdir=runs/study                 # full grid
  python scripts/identifiability_study.py --benchmark=shapes --workdir=runs/study_shapes

A finished run is never retrained (its result.json is read back), so an interrupted study
resumes where it stopped and `--models`/`--settings` can add to an existing study. On a new
machine, `--import_rows=docs/study/draws/results.csv` (any results.csv) counts the committed
rows as finished runs, so the study resumes from them. Runs go
to `--jobs` worker processes (default 2, single-threaded XLA each). See docs/results.md for
the numbers and their reading, docs/ivae.md for every model's objective.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs.ivae_synthetic import PUBLISHED_RECIPE  # noqa: E402  (needs ROOT on the path)
from scripts.study_common import (  # noqa: E402  (needs ROOT on the path)
    plot_mean_std,
    read_results,
    run_jobs,
    set_xla_threads,
    write_csv,
)

# Models: (config argument, overrides), shared by every setting. `iivae` is the implicit
# config: exact Jacobian terms and, where D > d, the fixed PCA projection g = F o P
# (`model.target_projection="auto"`). Models in DIM_MODELS only run where D > d (elsewhere
# they coincide with another model).
# The main grid's training budget, pinned so that its rows stay reproducible whatever the
# config's defaults become: Adam 1e-3, constant, 4,000 steps, batch 256.
MAIN_BUDGET = {"optim.learning_rate": 1e-3, "schedule.decay": "constant", "total_steps": 4000}
# The follow-up at mixing depth >= 3 (docs/results.md): Adam 3e-3 with cosine decay over
# 8,000 steps, given to the implicit model and to the explicit baselines alike.
LONG_BUDGET = {"optim.learning_rate": 3e-3, "schedule.decay": "cosine", "total_steps": 8000}

# The explicit variants' objective before issue 14: one-sample ELBO with analytic KL and
# decoder variance 0.01. `vae` and `ivae` now follow the config default, the published beta-TC
# objective (a, b, c, d = 100, 1, 0, 10, decoder variance 0.1, and for `ivae` the published
# zero prior mean); the `*_elbo` models and the
# analytic-only ones (beta_vae, ivae_pca, *_long) keep the earlier objective, so that their
# rows stay reproducible.
ANALYTIC = {"loss.elbo": "analytic", "model.obs_logvar": -4.6, "model.prior.mean": "learned"}
# The published iVAE networks (github.com/ilkhem/iVAE, `cleanIVAE`): zero prior mean, separate
# encoder mean and log-variance networks, two hidden layers of 100 xtanh units everywhere.
PUBLISHED_NETS = {
    "model.prior.mean": "zero",
    "model.encoder.split_heads": True,
    **{f"model.{net}.hidden": (100, 100) for net in ("prior", "encoder", "decoder")},
    **{f"model.{net}.activation": "xtanh" for net in ("prior", "encoder", "decoder")},
}
# The published iVAE code's optimiser (configs/ivae_synthetic.py PUBLISHED_RECIPE: Adam 0.01,
# ReduceLROnPlateau(0.1, patience 0) per epoch, batch 64, 12,500 steps): `ivae_pubopt` is
# `ivae` trained with it. It is that model's own budget, kept under --budget=config too.
OWN_BUDGET = {"ivae_pubopt"}
PUBLISHED_OPTIM = dict(PUBLISHED_RECIPE)
MODELS: dict[str, tuple[str, dict]] = {
    "vae": ("variant=vae", MAIN_BUDGET),
    "vae_elbo": ("variant=vae", MAIN_BUDGET | ANALYTIC),
    "beta_vae": ("variant=vae", MAIN_BUDGET | ANALYTIC | {"loss.beta": 4.0}),
    "ivae": ("variant=ivae", MAIN_BUDGET),
    "ivae_elbo": ("variant=ivae", MAIN_BUDGET | ANALYTIC),
    "ivae_pub": ("variant=ivae", MAIN_BUDGET | PUBLISHED_NETS),
    "ivae_pubopt": ("variant=ivae", PUBLISHED_OPTIM),
    "ivae_pca": ("variant=ivae", MAIN_BUDGET | ANALYTIC | {"model.target_projection": "pca"}),
    "iivae": ("variant=implicit", MAIN_BUDGET),
    "iivae_est": (
        "variant=implicit",
        MAIN_BUDGET | {"loss.logdet": "series", "loss.spectral": "power"},
    ),
    "iivae_full": (
        "variant=implicit",
        MAIN_BUDGET
        | {
            "model.target_projection": "none",
            "model.target_mode": "full",
            "model.flow.linear": True,
            "model.flow.linear_init": "pca",
        },
    ),
    "iivae_injective": (
        "variant=implicit",
        MAIN_BUDGET
        | {
            "model.target_projection": "none",
            "model.target_mode": "injective",
            "loss.spectral": "power",
        },
    ),
    "isometry": ("variant=isometry", MAIN_BUDGET),
    "iivae_uncond": ("variant=implicit", MAIN_BUDGET | {"model.prior.conditional": False}),
    "vae_long": ("variant=vae", LONG_BUDGET | ANALYTIC),
    "ivae_long": ("variant=ivae", LONG_BUDGET | ANALYTIC),
    "iivae_long": ("variant=implicit", LONG_BUDGET),
}
DIM_MODELS = ("ivae_pca", "iivae_full", "iivae_injective")
QUICK_MODELS = ("vae", "ivae", "iivae", "iivae_uncond")


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    overrides: dict
    depth: int = 3
    d: int = 5
    target_dim: int = 5


def synthetic_setting(depth: int, d: int, target_dim: int, **extra) -> Setting:
    over = {
        "data.mixing_layers": depth,
        "data.latent_dim": d,
        "data.target_dim": target_dim,
        "model.latent_dim": d,
        **extra,
    }
    return Setting(f"L{depth}_d{d}_D{target_dim}", over, depth, d, target_dim)


def synthetic_grid(quick: bool) -> list[Setting]:
    if quick:
        return [synthetic_setting(1, 5, 5), synthetic_setting(3, 5, 5), synthetic_setting(3, 5, 20)]
    grid = [synthetic_setting(depth, 5, 5) for depth in (1, 2, 3, 4)]
    grid += [synthetic_setting(3, d, d) for d in (2, 10)]
    grid += [synthetic_setting(3, 5, 20), synthetic_setting(4, 5, 20), synthetic_setting(3, 5, 100)]
    grid.append(synthetic_setting(3, 10, 40))  # d = 10 at D = 4d (issue 14, item 6)
    return grid


SHAPES_SETTING = Setting("shapes", {}, depth=0, d=4, target_dim=16)

# The published iVAE generator's data: one mixing matrix shared by every layer
# (`repeat_linearity=True`) and a one-hot segment label as the query. Used to check that the
# explicit-decoder baseline is not handicapped by our implementation (docs/results.md).
PUBLISHED = {"data.repeat_linearity": True, "data.query_kind": "onehot"}


def published_grid() -> list[Setting]:
    return [synthetic_setting(depth, 5, 5, **PUBLISHED) for depth in (1, 3)]


def _score(s: np.ndarray, z: np.ndarray, *, shapes: bool, seed: int) -> dict[str, float]:
    from jaxmr.metrics.dci import dci_scores
    from jaxmr.metrics.mcc import mcc_report
    from jaxmr.metrics.mig import mutual_info_gap
    from jaxmr.metrics.sap import sap_score

    rep = mcc_report(s, z, seed=seed)
    dci = dci_scores(s, z, seed=seed)
    out = {
        "mcc_strong": rep["mcc_strong"],
        "mcc_weak": rep["mcc_weak"],
        "mcc_strong_spearman": rep["mcc_strong_spearman"],
        "dci_d": dci["disentanglement"],
        "dci_c": dci["completeness"],
        "dci_i": dci["informativeness"],
        "mig": mutual_info_gap(s, z),
    }
    if shapes:
        out["sap"] = sap_score(s, z, discrete=[True] + [False] * (s.shape[1] - 1))
    return out


def run_one(job: dict) -> dict:
    """Trains (or reads back) one run and returns its CSV row."""
    set_xla_threads(job["jobs"])
    result_path = os.path.join(job["workdir"], "result.json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    from configs import ivae_synthetic
    from jaxmr.tasks import build_task
    from jaxmr.tasks.ivae import MCCEvaluator
    from jaxmr.train import loop

    arg, overrides = MODELS[job["model"]]
    if job.get("budget", "main") == "config" and job["model"] not in OWN_BUDGET:
        # the config's own optimiser and steps
        overrides = {k: v for k, v in overrides.items() if k not in MAIN_BUDGET}
    if job["benchmark"] == "shapes":
        arg += ",benchmark=shapes"
    config = ivae_synthetic.get_config(arg)
    config.seed = job["seed"]
    config.evals.mcc.every_steps = 0  # only at the end
    config.schedule.checkpoint_every_steps = 0
    config.schedule.keep_checkpoints = 1
    config.update_from_flattened_dict({**job["setting_overrides"], **overrides, **job["extra"]})
    if job.get("data_seed") is not None:
        config.data.seed = job["data_seed"]
    os.makedirs(job["workdir"], exist_ok=True)
    t0 = time.perf_counter()
    task = build_task(config)
    out = loop.train_and_evaluate(task, config, job["workdir"])
    seconds = time.perf_counter() - t0
    if out.get("preempted") or out.get("step") != config.total_steps:
        # Stopped by a signal: the checkpoint resumes next time; no result is written.
        raise RuntimeError(f"{job['workdir']}: stopped at step {out.get('step')}")
    _, state, _ = loop.restore_state(task, config, job["workdir"])
    ev = next(e for e in task.evaluators if isinstance(e, MCCEvaluator))
    z = ev.latents(state.params)
    row = {
        "benchmark": job["benchmark"],
        "setting": job["setting"],
        "depth": job["depth"],
        "d": job["d"],
        "D": job["target_dim"],
        "model": job["model"],
        "seed": job["seed"],
        "data_seed": int(config.data.seed),
        "budget": job.get("budget", "main"),
        "steps": int(config.total_steps),
        "seconds": round(seconds, 1),
    }
    if np.all(np.isfinite(z)):
        row |= _score(ev.arrays["s"], z, shapes=job["benchmark"] == "shapes", seed=job["seed"])
    else:
        row["failed"] = "non-finite latents"
    with open(result_path, "w") as f:
        json.dump(row, f, indent=1)
    return row


METRICS = ("mcc_strong", "mcc_weak", "dci_d", "dci_c", "dci_i", "mig", "sap")


def markdown_tables(rows: list[dict]) -> str:
    """One table per (benchmark, setting): mean ± std over seeds of every metric."""
    out = []
    keys = sorted({(r["benchmark"], r["setting"]) for r in rows}, key=_setting_order)
    for bench, setting in keys:
        sub = [r for r in rows if (r["benchmark"], r["setting"]) == (bench, setting)]
        metrics = [m for m in METRICS if any(m in r for r in sub)]
        r0 = sub[0]
        title = f"{bench}: mixing depth {r0['depth']}, d = {r0['d']}, D = {r0['D']}"
        if bench == "shapes":
            title = f"shapes: d = {r0['d']} shared factors, D = {r0['D']} target PCA features"
        if bench == "published":
            title = f"published-style data (shared mixing matrix, one-hot query): {title[11:]}"
        out += [f"### {title}", ""]
        header = "| model | seeds | " + " | ".join(metrics) + " | s/run |"
        out += [header, "|" + "---|" * (len(metrics) + 3)]
        for model in [m for m in MODELS if any(r["model"] == m for r in sub)]:
            runs = [r for r in sub if r["model"] == model]
            cells = []
            for m in metrics:
                vals = np.array([r[m] for r in runs if m in r], dtype=float)
                cells.append(f"{vals.mean():.3f} ± {vals.std():.3f}" if len(vals) else "—")
            secs = np.mean([r["seconds"] for r in runs])
            failed = sum("failed" in r for r in runs)
            seeds = f"{len(runs)}" + (f" ({failed} failed)" if failed else "")
            out.append(f"| {model} | {seeds} | " + " | ".join(cells) + f" | {secs:.0f} |")
        out.append("")
    return "\n".join(out)


def summary_table(rows: list[dict], metric: str = "mcc_strong") -> str:
    """One compact table: a row per model, a column per setting, mean ± std of `metric`."""
    keys = sorted({(r["benchmark"], r["setting"]) for r in rows}, key=_setting_order)
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    out = [
        "| model | "
        + " | ".join(s + (f" ({b})" if b == "published" else "") for b, s in keys)
        + " |",
        "|---|" + "---|" * len(keys),
    ]
    for model in models:
        cells = []
        for key in keys:
            vals = [
                r[metric]
                for r in rows
                if (r["benchmark"], r["setting"]) == key and r["model"] == model and metric in r
            ]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "—")
        out.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _setting_order(key):
    bench, setting = key
    if bench == "shapes":
        return (2, 0, 0, 0)
    depth, d, dd = (int(p[1:]) for p in setting.split("_"))
    return (int(bench == "published"), d != 5 or dd != 5, dd, d * 10 + depth)


def _plot_mcc(rows: list[dict], path: str, sweep: str, fixed: dict, **plot) -> bool:
    """Strong MCC (mean ± std over seeds) of each model against `sweep` on the synthetic rows
    matching `fixed`; False (nothing written) with fewer than two values of `sweep`."""
    sub = [r for r in rows if r["benchmark"] == "synthetic" and fixed.items() <= r.items()]
    values = sorted({r[sweep] for r in sub})
    if len(values) < 2:
        return False
    curves = {
        model: {v: [r["mcc_strong"] for r in sub if r["model"] == model and r[sweep] == v]
                for v in values}
        for model in MODELS
    }  # fmt: skip
    ylabel = "strong MCC (mean ± std over seeds)"
    plot_mean_std(path, curves, xs=values, ylabel=ylabel, ylim=(0, 1.02), **plot)
    return True


def plot_mcc_vs_depth(rows: list[dict], path: str) -> bool:
    """Strong MCC against mixing depth at d = D = 5, per model."""
    labels = {"xlabel": "mixing depth (layers)", "title": "Synthetic benchmark, d = D = 5"}
    return _plot_mcc(rows, path, "depth", {"d": 5, "D": 5}, **labels)


def plot_mcc_vs_target_dim(rows: list[dict], path: str) -> bool:
    """Strong MCC against the target dimension D at depth 3, d = 5, per model (log axis)."""
    title = "Synthetic benchmark, mixing depth 3, d = 5"
    return _plot_mcc(
        rows, path, "D", {"d": 5, "depth": 3}, xlabel="target dimension D", title=title, log_x=True
    )


def write_outputs(rows: list[dict], workdir: str) -> None:
    fields = [
        "benchmark",
        "setting",
        "depth",
        "d",
        "D",
        "model",
        "seed",
        "data_seed",
        "budget",
        "steps",
        "seconds",
        "mcc_strong",
        "mcc_weak",
        "mcc_strong_spearman",
        "dci_d",
        "dci_c",
        "dci_i",
        "mig",
        "sap",
        "failed",
    ]
    write_csv(os.path.join(workdir, "results.csv"), rows, fields)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(markdown_tables(rows))
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write("Strong MCC\n\n" + summary_table(rows) + "\nWeak MCC\n\n")
        f.write(summary_table(rows, "mcc_weak"))
    if len({r.get("data_seed", 1) for r in rows}) > 1:
        with open(os.path.join(workdir, "draws.md"), "w") as f:
            f.write(draws_table(rows) + "\n" + draws_table(rows, "mcc_weak"))
    plot_mcc_vs_depth(rows, os.path.join(workdir, "mcc_vs_depth.png"))
    plot_mcc_vs_target_dim(rows, os.path.join(workdir, "mcc_vs_target_dim.png"))


def build_jobs(args) -> list[dict]:
    models = args.models.split(",") if args.models else [m for m in MODELS if "_long" not in m]
    unknown = set(models) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; known: {list(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    settings: list[tuple[str, Setting]] = []
    if args.benchmark in ("synthetic", "both"):
        settings += [("synthetic", s) for s in synthetic_grid(args.quick)]
    if args.benchmark in ("shapes", "both"):
        settings.append(("shapes", SHAPES_SETTING))
    if args.benchmark == "published":
        settings += [("published", s) for s in published_grid()]
    if args.settings:
        keep = set(args.settings.split(","))
        settings = [(b, s) for b, s in settings if s.name in keep]
    if seeds is None:
        seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    extra = {}
    if args.steps:
        extra["total_steps"] = args.steps
    elif args.quick:
        extra["total_steps"] = 2000
    data_seeds = [int(k) for k in args.data_seeds.split(",")] if args.data_seeds else [None]
    jobs = []
    for bench, setting in settings:
        for model in models:
            if model in DIM_MODELS and setting.target_dim == setting.d:
                continue
            if args.quick and model not in QUICK_MODELS:
                continue
            for data_seed in data_seeds:
                for seed in seeds:
                    jobs.append(_job(args, bench, setting, model, seed, data_seed, extra))
    return jobs


def _job(args, bench, setting, model, seed, data_seed, extra) -> dict:
    setting_dir = setting.name if bench != "published" else f"published_{setting.name}"
    if data_seed is not None:  # the data-draw axis: its own directory per draw
        setting_dir += f"_ds{data_seed}"
    run_dir = f"{model}_s{seed}" if args.budget == "main" else f"{model}_{args.budget}_s{seed}"
    return {
        "benchmark": bench,
        "setting": setting.name,
        "setting_overrides": setting.overrides,
        "depth": setting.depth,
        "d": setting.d,
        "target_dim": setting.target_dim,
        "model": model,
        "seed": seed,
        "data_seed": data_seed,
        "budget": args.budget,
        "extra": extra | _per_setting_extra(model, setting),
        "workdir": os.path.join(os.path.abspath(args.workdir), "runs", setting_dir, run_dir),
        "jobs": args.jobs,
    }


def _per_setting_extra(model: str, setting: Setting) -> dict:
    """Exact Jacobian terms of a D x D flow cost O(D^3) per block and example: above D = 20
    the unprojected candidates use the estimators (power-iteration spectral norms,
    power-series log det) instead. (`iivae` there is a flow on the projected R^d.)"""
    if setting.target_dim > 20 and model in ("iivae_full", "iivae_injective"):
        return {"loss.logdet": "series", "loss.spectral": "power"}
    return {}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", default="runs/study")
    p.add_argument("--quick", action="store_true", help="reduced grid (minutes on 2 cores)")
    p.add_argument(
        "--benchmark",
        choices=("synthetic", "shapes", "both", "published"),
        default="synthetic",
        help="published: the published iVAE generator's data (shared mixing matrix, one-hot query)",
    )
    p.add_argument("--models", default="", help=f"comma list from {list(MODELS)}")
    p.add_argument("--settings", default="", help="comma list of setting names, e.g. L3_d5_D5")
    p.add_argument("--seeds", default="", help="comma list (default 0-4; quick: 0,1)")
    p.add_argument("--steps", type=int, default=0, help="override total_steps of every run")
    p.add_argument(
        "--data_seeds",
        default="",
        help="comma list of data draws (config data.seed; default: the config's draw, 1)",
    )
    p.add_argument(
        "--budget",
        choices=("main", "config"),
        default="main",
        help="main: Adam 1e-3 constant, 4,000 steps (pinned); config: the config's defaults",
    )
    p.add_argument(
        "--import_rows",
        default="",
        help="comma list of results.csv files of earlier studies (e.g. the committed "
        "docs/study/*/results.csv): their rows count as finished runs of this grid",
    )
    p.add_argument(
        "--export_npz",
        action="store_true",
        help="write every (setting, draw) as WORKDIR/data/*.npz (x, y, s) and exit; the "
        "PyTorch reference check reads them with --npz",
    )
    p.add_argument("--jobs", type=int, default=2, help="parallel worker processes")
    p.add_argument(
        "--report_only", action="store_true", help="rewrite the outputs from finished runs"
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        rows = _all_results(args.workdir)
        write_outputs(rows, args.workdir)
        print(summary_table(rows))
        return
    os.makedirs(args.workdir, exist_ok=True)
    jobs = build_jobs(args)
    if args.export_npz:
        for path in export_npz(jobs, args.workdir):
            print(path)
        return
    if args.import_rows:
        n = import_rows(jobs, args.import_rows.split(","), steps=args.steps or None)
        print(f"{n} finished runs imported from {args.import_rows}", flush=True)
    print(f"{len(jobs)} runs -> {args.workdir}", flush=True)
    t0 = time.perf_counter()
    rows = []

    def on_done(job, row):
        rows.append(row)
        _progress(row, len(rows), len(jobs), t0)

    def on_error(job, exc):
        raise exc  # as before: the first failure (or a stopped run) ends the study

    run_jobs(run_one, jobs, workers=args.jobs, on_done=on_done, on_error=on_error)
    # Merge with rows of earlier invocations in the same workdir (other models/settings).
    rows = _all_results(args.workdir)
    write_outputs(rows, args.workdir)
    print(markdown_tables(rows))
    if len({r.get("data_seed", 1) for r in rows}) > 1:
        print(draws_table(rows))
    print(f"study wall time {time.perf_counter() - t0:.0f}s", flush=True)


INT_FIELDS = ("depth", "d", "D", "seed", "data_seed", "steps")


def _typed_row(row: dict) -> dict:
    """A results.csv row as run_one wrote it to result.json: empty cells dropped, counts as
    ints, metrics as floats, names as strings."""
    out = {}
    for k, v in row.items():
        if v in ("", None):
            continue
        if k in INT_FIELDS:
            out[k] = int(v)
        else:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def import_rows(jobs: list[dict], paths: list[str], *, steps: int | None = None) -> int:
    """Writes the rows of earlier studies' results.csv files as the result.json of the jobs
    they finished, so that this invocation skips those runs and reports them with its own.
    A row finishes a job when benchmark, setting, model, seed and budget agree, and the data
    draw (when the job has one) and `steps` (when given) too; a job whose result.json exists
    is left alone. A job without a data draw matches only if exactly one row does. Returns
    the number of result.json files written."""
    import csv

    rows = []
    for path in paths:
        if not os.path.exists(path):
            raise SystemExit(f"--import_rows: no such file {path!r}")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"benchmark", "setting", "model", "seed", "budget"} - set(
                reader.fieldnames or ()
            )
            if missing:
                raise SystemExit(f"--import_rows: {path} lacks the columns {sorted(missing)}")
            rows += [_typed_row(r) for r in reader]
    written = 0
    for job in jobs:
        result_path = os.path.join(job["workdir"], "result.json")
        if os.path.exists(result_path):
            continue
        found = [
            r
            for r in rows
            if (r["benchmark"], r["setting"], r["model"], r["seed"], r["budget"])
            == (job["benchmark"], job["setting"], job["model"], job["seed"], job["budget"])
            and (job["data_seed"] is None or r.get("data_seed") == job["data_seed"])
            and (steps is None or r.get("steps") == steps)
        ]
        if len(found) != 1:
            continue
        os.makedirs(job["workdir"], exist_ok=True)
        with open(result_path, "w") as f:
            json.dump(found[0], f, indent=1)
        written += 1
    return written


def export_npz(jobs: list[dict], workdir: str) -> list[str]:
    """Writes the arrays of every distinct (benchmark, setting, data draw) of `jobs` to
    WORKDIR/data/<benchmark>_<setting>_ds<k>.npz (keys x, y, s): the same arrays the JAX runs
    train on, for `scripts/reference_ivae_check.py --npz`."""
    from configs import ivae_synthetic
    from jaxmr.tasks.ivae.synthetic import load_data

    out, seen = [], set()
    os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
    for job in jobs:
        config = ivae_synthetic.get_config(
            "benchmark=shapes" if job["benchmark"] == "shapes" else None
        )
        config.update_from_flattened_dict(job["setting_overrides"])
        if job.get("data_seed") is not None:
            config.data.seed = job["data_seed"]
        key = (job["benchmark"], job["setting"], int(config.data.seed))
        if key in seen:
            continue
        seen.add(key)
        path = os.path.join(workdir, "data", "{}_{}_ds{}.npz".format(*key))
        arrays = load_data(config.data)
        np.savez(path, **{k: arrays[k] for k in ("x", "y", "s")})
        out.append(path)
    return out


def draws_table(rows: list[dict], metric: str = "mcc_strong") -> str:
    """Per (benchmark, setting): a row per model with the mean of `metric` over model seeds on
    each data draw, then the median and the worst of those per-draw means."""
    out = []
    keys = sorted({(r["benchmark"], r["setting"]) for r in rows}, key=_setting_order)
    for key in keys:
        sub = [r for r in rows if (r["benchmark"], r["setting"]) == key and metric in r]
        draws = sorted({r.get("data_seed", 1) for r in sub})
        out += [f"### {key[0]} {key[1]}: {metric}, mean over model seeds per data draw", ""]
        out.append(
            "| model | "
            + " | ".join(f"draw {k}" for k in draws)
            + " | median | worst (draw) | runs |"
        )
        out.append("|---|" + "---|" * (len(draws) + 3))
        for model in [m for m in MODELS if any(r["model"] == m for r in sub)]:
            means = {}
            for k in draws:
                vals = [
                    r[metric] for r in sub if r["model"] == model and r.get("data_seed", 1) == k
                ]
                if vals:
                    means[k] = float(np.mean(vals))
            cells = [f"{means[k]:.3f}" if k in means else "—" for k in draws]
            worst = min(means, key=means.get)
            n = sum(r["model"] == model for r in sub)
            out.append(
                f"| {model} | "
                + " | ".join(cells)
                + f" | {np.median(list(means.values())):.3f} | {means[worst]:.3f} ({worst}) | {n} |"
            )
        out.append("")
    return "\n".join(out)


def _progress(row, done, total, t0):
    mcc = row.get("mcc_strong", float("nan"))
    print(
        f"[{done}/{total}] {row['setting']} ds{row.get('data_seed', 1)} {row['model']} "
        f"s{row['seed']}: "
        f"MCC {mcc:.3f}  {row['seconds']:.0f}s  (elapsed {time.perf_counter() - t0:.0f}s)",
        flush=True,
    )


def _all_results(workdir: str) -> list[dict]:
    rows = read_results(workdir)
    order = {m: i for i, m in enumerate(MODELS)}
    rows.sort(key=lambda r: (r["benchmark"], r["setting"], order.get(r["model"], 99), r["seed"]))
    return rows


if __name__ == "__main__":
    main()
