"""Helpers shared by the study scripts (identifiability_study.py, retrieval_study.py).

- `set_xla_threads(jobs)`: single-threaded XLA in each worker when runs go in parallel;
- `read_results(workdir)`: every `runs/**/result.json` under a study's workdir;
- `write_csv(path, rows, fields)`: one row per run, unknown keys ignored, missing ones empty;
- `mean_std(values)`: the "mean ± std" cell of the markdown tables (std over seeds, ddof 0);
- `plot_mean_std(path, curves, ...)`: the figures, one error-bar curve (mean ± std over
  seeds) per model or method against one swept setting;
- `parse_set(items)`: `--set KEY=VALUE` overrides as a dict, values read as Python literals
  where they parse (numbers, booleans, tuples), else kept as strings;
- `run_jobs(fn, jobs, ...)`: runs `fn(job)` in this process or in spawned workers and reports
  each finished run (or its error) as soon as it is done, so tables can be rewritten after
  every run. SIGTERM/SIGINT to the study process reach the workers too: each running run
  saves its checkpoint and stops, queued runs do not start.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

import numpy as np


def parse_set(items: Iterable[str] | None) -> dict:
    """`["a.b=3", "c=x", "d=(1, 2)", "e=true"]` -> `{"a.b": 3, "c": "x", "d": (1, 2), "e": True}`.

    Values are read as Python literals where they parse (tuples included), `true`/`false`
    in any case as booleans, anything else as a string; an item without `=` is an error.
    """
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        if value.lower() in ("true", "false"):
            out[key] = value.lower() == "true"
            continue
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def set_xla_threads(jobs: int) -> None:
    """With several worker processes on a small machine, each keeps to one XLA thread."""
    if jobs > 1 and "intra_op_parallelism_threads" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()


def read_results(workdir: str) -> list[dict]:
    """The rows of every finished run under `workdir/runs` (unsorted)."""
    rows = []
    for root, _, files in os.walk(os.path.join(workdir, "runs")):
        if "result.json" in files:
            with open(os.path.join(root, "result.json")) as f:
                rows.append(json.load(f))
    return rows


def write_csv(path: str, rows: Iterable[dict], fields: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def mean_std(values: Iterable, digits: int = 3) -> str | None:
    """`"m ± s"` over the finite values, or None when there are none."""
    vals = np.array([v for v in values if v is not None], dtype=float)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return None
    return f"{vals.mean():.{digits}f} ± {vals.std():.{digits}f}"


def plot_mean_std(
    path: str,
    curves: dict[str, dict[float, list]],
    *,
    xs: Sequence[float],
    xlabel: str,
    ylabel: str,
    title: str,
    ylim: tuple[float | None, float | None] = (0, None),
    log_x: bool = False,
) -> None:
    """Writes a PNG with one error-bar curve per label of `curves` ({label: {x: values}}): the
    mean and std (ddof 0) of the values that are not None at each x of `xs`; x values with
    none, and labels with no point, are left out."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, by_x in curves.items():
        pts = [(x, [v for v in by_x.get(x, []) if v is not None]) for x in xs]
        pts = [(x, v) for x, v in pts if v]
        if pts:
            ax.errorbar(
                [p[0] for p in pts],
                [np.mean(p[1]) for p in pts],
                yerr=[np.std(p[1]) for p in pts],
                marker="o",
                capsize=3,
                label=label,
            )
    if log_x:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(xs)
    if log_x:
        ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


_STOP_EVENT = None


def _worker_init(event) -> None:
    """A worker in its own process group, so that a terminal's Ctrl-C reaches only the study
    process, which forwards one SIGTERM (a second signal would kill a worker mid-save)."""
    global _STOP_EVENT
    _STOP_EVENT = event
    os.setpgrp()


def _guarded(fn: Callable[[dict], dict], job: dict) -> dict:
    """`fn(job)` in a worker, unless the study was signalled before the job started."""
    if _STOP_EVENT is not None and _STOP_EVENT.is_set():
        raise NotStarted(f"{job.get('workdir', job)}: not started, the study was stopped")
    return fn(job)


class NotStarted(RuntimeError):
    """A queued job that a worker skipped because the study had been signalled to stop."""


def run_jobs(
    fn: Callable[[dict], dict],
    jobs: Sequence[dict],
    *,
    workers: int,
    on_done: Callable[[dict, dict], None],
    on_error: Callable[[dict, BaseException], bool],
) -> None:
    """Runs `fn` on every job: in this process when `workers` is 1, else in `workers` spawned
    processes (`fn` must then be importable by name). `on_done(job, row)` follows each finished
    run; `on_error(job, exc)` each failed one and returns whether to go on (False: pending jobs
    are cancelled and running ones are waited for).

    With workers, SIGTERM/SIGINT to this process send one SIGTERM to every worker (whose
    training loop saves a checkpoint after its current step and stops, as a run in this
    process does) and jobs not yet started are skipped; a second signal acts as usual on this
    process only. Before, a `kill` of the study left its workers training on, orphaned."""
    if workers <= 1:
        for job in jobs:
            try:
                row = fn(job)
            except Exception as exc:  # the caller decides whether to go on
                if not on_error(job, exc):
                    return
                continue
            on_done(job, row)
        return
    ctx = get_context("spawn")
    event = ctx.Event()
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(event,)
    ) as pool:
        pending = {pool.submit(_guarded, fn, job): job for job in jobs}
        old = {}

        def forward(signum, frame):
            event.set()
            for sig, handler in old.items():  # a second signal acts as usual
                signal.signal(sig, handler)
            for fut in pending:
                fut.cancel()
            # The executor's worker processes (a private attribute: the public API has no
            # way to signal them, and it has held them under this name since Python 3.2).
            for proc in list((pool._processes or {}).values()):
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            print(
                f"received {signal.Signals(signum).name}: SIGTERM sent to the workers, which "
                "save and stop; queued runs will not start",
                flush=True,
            )

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                old[sig] = signal.signal(sig, forward)
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    if fut.cancelled():
                        continue
                    exc = fut.exception()
                    if isinstance(exc, NotStarted):
                        continue
                    if exc is None:
                        on_done(job, fut.result())
                    elif not on_error(job, exc):
                        for other in pending:
                            other.cancel()
                        pending = {f: j for f, j in pending.items() if not f.cancelled()}
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
