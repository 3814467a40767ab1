"""The one trainer: `train_and_evaluate(config, workdir)`.

Phases: build the task and mesh -> build or restore the state -> loop over steps (place the
host batch, jitted step, log, check finiteness, checkpoint, evaluate) -> final checkpoint and
evaluation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any

import jax
import numpy as np

from jaxmr.data.arrays import ArrayLoader
from jaxmr.train import mesh as mesh_lib
from jaxmr.train import record
from jaxmr.train import step as step_lib
from jaxmr.train.checkpoint import BestCheckpointer, Checkpointer
from jaxmr.train.host_memory import configure_host_allocator
from jaxmr.train.logging import MetricWriter, Progress
from jaxmr.train.prefetch import Prefetcher
from jaxmr.train.task import Sampler, Task


class NonFiniteError(FloatingPointError):
    """A loss term or norm became NaN/inf; names the step and the term."""


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key."""


def make_sampler(task: Task, config) -> Sampler:
    """The task's own sampler, or uniform batches over its equal-length `train_arrays`."""
    kwargs = dict(
        batch_size=config.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    if task.make_sampler is not None:
        return task.make_sampler(**kwargs)
    return ArrayLoader(task.train_arrays, **kwargs)


def _hook_scalars(out) -> dict[str, float]:
    """What an epoch hook returned, as loggable scalars (`hook/name`, arrays as `name/i`)."""
    scalars = {}
    for k, v in (out or {}).items():
        arr = np.asarray(v, dtype=np.float64)
        if arr.ndim == 0:
            scalars[f"hook/{k}"] = float(arr)
        else:
            scalars.update({f"hook/{k}/{i}": float(x) for i, x in enumerate(arr.ravel())})
    return scalars


def prepare_workdir(workdir: str) -> str:
    if "://" in workdir:
        # Logs, metrics, figures and the run record are written with plain file I/O: a URL
        # would silently become a local folder named after its scheme ("gs:").
        raise ValueError(
            f"--workdir must be a local or mounted folder, got the URL {workdir}; mount the "
            "bucket (e.g. with gcsfuse) and pass the mount point"
        )
    workdir = os.path.abspath(os.path.expanduser(workdir))
    parent = os.path.dirname(workdir)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"--workdir parent directory does not exist: {parent}")
    os.makedirs(workdir, exist_ok=True)
    return workdir


def _is_lead() -> bool:
    return jax.process_index() == 0


def _log(msg: str) -> None:
    if _is_lead():
        print(msg, flush=True)


def _check_finite(pending: list[tuple[int, dict]]) -> None:
    """Raises NonFiniteError naming the first step and term that is not finite."""
    for step, m in pending:
        # Report a loss term before the norms it poisons.
        for k, v in sorted(m.items(), key=lambda kv: (not kv[0].endswith("loss"), kv[0])):
            if not np.all(np.isfinite(v)):
                raise NonFiniteError(
                    f"non-finite value {k}={float(np.asarray(v).ravel()[0])} at step {step}; "
                    "stopping (the last checkpoint is intact)"
                )


class _StopRequest:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint after the current step and
    exits cleanly (preemption on shared clusters). A second signal is not intercepted."""

    def __init__(self):
        self.signal_name = ""

    def _handler(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        for sig, old in self._old.items():  # a second signal acts as usual
            signal.signal(sig, old)

    @contextlib.contextmanager
    def installed(self):
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handler)
        try:
            yield self
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)

    def requested(self) -> bool:
        return bool(self.signal_name)


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def restore_state(
    task: Task, config, workdir: str, *, step: int | None = None, checkpoint: str = "latest"
):
    """(mesh, state, step) restored from `workdir` for evaluation.

    `checkpoint="latest"` reads `checkpoints/` (newest readable, or `step`); `"best"` reads
    the best checkpoint kept by `task.best_metric` in `checkpoints_best/`. Read-only: an
    unreadable checkpoint is reported and skipped, never moved, and no folder is created.
    """
    if checkpoint not in ("latest", "best"):
        raise ValueError(f"checkpoint must be 'latest' or 'best', got {checkpoint!r}")
    mesh = mesh_lib.make_data_mesh(config.num_devices)
    target = step_lib.abstract_state(task, mesh)
    if checkpoint == "best":
        if task.best_metric is None:
            raise ValueError(f"task {task.name} keeps no best checkpoint (no best_metric)")
        best = BestCheckpointer(
            os.path.join(workdir, "checkpoints_best"),
            task.best_metric,
            task.best_mode,
            read_only=True,
        )
        if best.best_step() is None:
            raise FileNotFoundError(f"no best checkpoint in {best.directory}; run train.py first")
        state, restored = best.restore(target, step)
        best.close()
        return mesh, state, restored
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint found in {ckpt.directory}; run train.py first")
    state, _, restored = ckpt.restore(target, step)
    ckpt.close()
    return mesh, state, restored


def train_and_evaluate(task: Task, config, workdir: str) -> dict[str, Any]:
    """Trains `task` (built from `config` by `jaxmr.tasks.build_task`) for
    `config.total_steps`, resuming from `workdir` if it holds checkpoints. Returns the last
    logged measurements and evaluator results."""
    workdir = prepare_workdir(workdir)
    total = int(config.total_steps)
    if total < 1:
        raise ConfigError(f"config.total_steps must be >= 1, got {total}")
    # "keep": the step's freed temporaries stay for the next step (no page faults on fresh
    # pages); "system" leaves the C library's defaults (jaxmr.train.host_memory).
    try:
        configure_host_allocator(config.get("host_allocator", "system"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    mesh = mesh_lib.make_data_mesh(config.num_devices)
    n_dev = mesh.devices.size
    if config.batch_size % n_dev:
        raise ConfigError(
            f"config.batch_size={config.batch_size} is not divisible by the {n_dev} devices"
        )
    loader = make_sampler(task, config)
    root_key = jax.random.key(config.seed)
    init_key, step_key = jax.random.split(root_key)
    sched = config.schedule
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        keep=sched.keep_checkpoints,
        asynchronous=sched.async_checkpoints,
    )
    best = None
    if task.best_metric is not None:  # every process takes part in Orbax saves
        best = BestCheckpointer(
            os.path.join(workdir, "checkpoints_best"), task.best_metric, task.best_mode
        )
    target = step_lib.abstract_state(task, mesh)
    shardings = jax.tree.map(lambda s: s.sharding, target)

    unfinished = ckpt.unfinished_steps()
    changes = {}
    if ckpt.latest_step() is not None:
        # Before reading any checkpoint: a config that changes the model or data is an error
        # naming the keys, not a series of "unreadable checkpoint" warnings.
        changes = record.check_resume(workdir, config)
        newer = [s for s in unfinished if s > ckpt.latest_step()]
        if newer:
            _log(
                f"note: ignoring the unfinished checkpoint(s) at step {newer} in {ckpt.directory} "
                "(saves that a killed run never committed)"
            )
        state, extras, start = ckpt.restore(target)
        for name, values in extras.items():
            loader.set_per_example(name, values)
        _log(f"resuming from checkpoint at step {start} in {ckpt.directory}")
        if start >= total:
            _log(f"checkpoint step {start} >= total_steps {total}: nothing to train")
        resume_step = start
    else:
        if unfinished:
            _log(
                f"warning: {ckpt.directory} holds only unfinished checkpoint(s) (step "
                f"{unfinished}, never committed by a killed run); starting over from step 0"
            )
        state = step_lib.init_state(task, init_key, mesh)
        start, resume_step = 0, None
    if _is_lead():  # the config is now known to be usable: record it
        record.write_record(workdir, config, resumed_from=resume_step, changes=changes)
        if changes:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
            _log(f"config changed since the last start (recorded in runs.jsonl): {shown}")
    writer = MetricWriter(workdir, enabled=_is_lead(), resume_step=resume_step)
    progress = Progress(total, start, enabled=_is_lead())
    train_step = step_lib.jit_train_step(
        task, mesh, shardings, steps_per_epoch=loader.steps_per_epoch
    )
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    _log(
        f"task {task.name} {task.info.get('variant', '')}: {n_params:,} parameters, "
        f"{loader.num_examples:,} examples, batch {config.batch_size} over {n_dev} "
        f"{jax.devices()[0].platform} device(s), steps {start}->{total}"
    )

    last: dict[str, Any] = {}
    pending: list[tuple[int, dict]] = []
    step = start
    stop = _StopRequest()
    # Off by default: on 2 CPU cores it did not help (bench/input_pipeline.py), and one CI-like
    # run aborted inside the jitted step while the prefetch thread was placing a batch (not
    # reproduced or diagnosed). `config.prefetch = N` turns it on, N batches ahead.
    config_prefetch = int(config.prefetch)
    prefetch = None

    def make_batch(s: int):
        return mesh_lib.place_batch(loader.batch(s - 1), mesh)

    try:
        with stop.installed():
            for step in range(start + 1, total + 1):
                epoch_start = (step - 1) % loader.steps_per_epoch == 0
                if task.epoch_hook is not None and epoch_start:
                    with progress.timing("hook"):
                        hook_out = task.epoch_hook(
                            state, loader, (step - 1) // loader.steps_per_epoch
                        )
                    if hook_out:
                        hook_scalars = _hook_scalars(hook_out)
                        writer.write(step - 1, hook_scalars)
                        last.update(hook_scalars)
                if config_prefetch <= 0:
                    batch = make_batch(step)
                elif prefetch is None or (task.epoch_hook is not None and epoch_start):
                    # With an epoch hook, batches must not be built before the hook has
                    # attached this epoch's per-example values: prefetch within the epoch.
                    if prefetch is not None:
                        prefetch.close()
                    stop_at = total + 1
                    if task.epoch_hook is not None:
                        epoch_end = (step - 1) // loader.steps_per_epoch + 1
                        stop_at = min(stop_at, epoch_end * loader.steps_per_epoch + 1)
                    prefetch = Prefetcher(make_batch, step, stop_at, depth=config_prefetch)
                if config_prefetch > 0:
                    batch = prefetch.next()
                state, measurements = train_step(state, batch, step_key)
                pending.append((step, measurements))
                if step == start + 1:
                    jax.block_until_ready(measurements)
                    progress.reset_clock(step)
                preempted = stop.requested()
                save = _due(step, sched.checkpoint_every_steps, total) or preempted
                if _due(step, sched.log_every_steps, total) or save:
                    pending = [(s, jax.device_get(m)) for s, m in pending]
                    _check_finite(pending)
                    # Log the step's own values (not a window mean), so the log of a resumed
                    # run is identical to an uninterrupted one whatever the stop point.
                    scalars = {k: float(v) for k, v in pending[-1][1].items()}
                    writer.write(step, scalars)
                    progress.update(step, {k: v for k, v in scalars.items() if k.endswith("loss")})
                    last.update(scalars)
                    pending = []
                results = {}
                for ev in task.evaluators:
                    if _due(step, ev.every_steps, total):
                        t0 = time.perf_counter()
                        with progress.timing("eval"):
                            res = {f"{ev.name}/{k}": v for k, v in ev.run(state.params).items()}
                        writer.write(step, res)
                        results.update(res)
                        shown = "  ".join(f"{k} {v:.4f}" for k, v in res.items())
                        _log(f"eval step {step}: {shown}  ({time.perf_counter() - t0:.1f}s)")
                last.update(results)
                # The checkpoint of a step comes after its evaluations: a run killed in
                # between resumes from the previous checkpoint and redoes them, where the
                # other order lost the step's evaluation rows for good.
                if save:
                    with progress.timing("checkpoint"):
                        ckpt.save(step, state, extras=loader.per_example)
                if best is not None and task.best_metric in results:
                    with progress.timing("checkpoint"):
                        best.save(step, state, results)
                if preempted:
                    ckpt.wait()
                    _log(
                        f"received {stop.signal_name}: saved checkpoint at step {step}; "
                        "exiting (rerun the same command to resume)"
                    )
                    last["preempted"] = True
                    break
    finally:
        if prefetch is not None:
            prefetch.close()
        ckpt.close()
        if best is not None:
            best.close()
        writer.close()
    last["step"] = step
    return last
