"""`evaluate(config, workdir)`: what eval.py runs. Restores the newest readable (or the best)
checkpoint, read-only, and writes `workdir/eval/step_<N>/metrics.json` plus the evaluators'
figures there; `workdir/eval/` gets a copy of those files (the latest evaluation), and the
evaluations of earlier steps stay in their own folders."""

from __future__ import annotations

import json
import os
import shutil

import jax

from jaxmr.tasks import build_task
from jaxmr.train.loop import restore_state


def evaluate(config, workdir: str, *, step: int | None = None, checkpoint: str = "latest") -> dict:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"--workdir does not exist: {workdir}")
    task = build_task(config)
    _, state, restored = restore_state(task, config, workdir, step=step, checkpoint=checkpoint)
    latest_dir = os.path.join(workdir, "eval")
    out_dir = os.path.join(latest_dir, f"step_{restored}")
    os.makedirs(out_dir, exist_ok=True)
    metrics = {
        "step": restored,
        "checkpoint": checkpoint,
        "variant": task.info.get("variant", ""),
        "task": task.name,
    }
    figures = []
    for ev in task.evaluators:
        ev_metrics, ev_figures = ev.evaluate(state.params, out_dir)
        metrics.update(ev_metrics)
        figures.extend(ev_figures)
    if "mcc_strong" not in metrics and task.name.startswith("ivae"):
        metrics["note"] = "no true factors in the data: MCC not computed"
    metrics["figures"] = [os.path.relpath(f, workdir) for f in figures]
    if jax.process_index() == 0:
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        # The latest evaluation, also at the top of eval/: every file and subfolder of
        # eval/step_N/ under the same relative path.
        shutil.copytree(out_dir, latest_dir, dirs_exist_ok=True)
        shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
        print(f"eval of step {restored}: {shown} -> {os.path.join(out_dir, 'metrics.json')}")
    return metrics
