"""Orbax checkpointing (the only Orbax importer): keep N, save at chosen steps, auto-resume,
fall back past a corrupted newest checkpoint.

Each checkpoint holds the train state and, when a task's epoch hook attached per-example
values to the loader, those values too (`extras`), so a resumed run continues bit-for-bit.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

TMP_MARKER = ".orbax-checkpoint-tmp"


class _QuietReadOnly(logging.Filter):
    """Drops Orbax's warning that a read-only manager's folder is read only: eval.py opens
    the checkpoints read-only on purpose, and the warning reads like a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "Given directory is read only" not in msg and "read_only=True, setting" not in msg


_QUIET_READ_ONLY = _QuietReadOnly()


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager`.

    Orbax writes each step into a temporary directory (`<step>.orbax-checkpoint-tmp...`) and
    renames it when complete, so a crash or kill mid-save leaves the previous checkpoints
    intact; the temporary directory is never taken for a checkpoint.

    `save` waits for that commit by default. Orbax commits asynchronously: its background
    threads write the files and then rename the folder while training goes on. On a 2-core
    CPU the commit took 0.2-0.3 s with the main thread idle and about 1 s (40-60 steps of the
    smoke job) while training competed for the cores, so a `kill -9` within that window lost
    the checkpoint just saved (the step-50 checkpoint was still a temporary folder at step
    80). Waiting costs that commit time once per checkpoint (0.3-0.7 s measured, smoke and
    default iIVAE states); `asynchronous=True` restores the overlap for large states.

    `read_only=True` (eval.py) never creates, moves or deletes anything.
    """

    def __init__(
        self,
        directory: str,
        *,
        keep: int = 3,
        asynchronous: bool = False,
        read_only: bool = False,
    ):
        self.directory = os.path.abspath(directory)
        self.asynchronous = asynchronous
        self.read_only = read_only
        if read_only:
            logging.getLogger("absl").addFilter(_QUIET_READ_ONLY)  # idempotent
        options = (
            ocp.CheckpointManagerOptions(
                read_only=True, create=False, max_to_keep=None, save_interval_steps=0
            )
            if read_only
            else ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def unfinished_steps(self) -> list[int]:
        """Steps whose save never committed (a temporary folder left by a killed run)."""
        if not os.path.isdir(self.directory):
            return []
        steps = []
        for name in os.listdir(self.directory):
            head = name.split(TMP_MARKER)[0]
            if TMP_MARKER in name and head.isdigit():
                steps.append(int(head))
        return sorted(steps)

    def save(
        self,
        step: int,
        state,
        *,
        extras: dict[str, np.ndarray] | None = None,
        wait: bool | None = None,
    ) -> None:
        """Saves `state` (and `extras`) at `step`; returns once the checkpoint is committed
        unless the checkpointer is asynchronous (`wait` overrides either way)."""
        items = {"state": ocp.args.StandardSave(state)}
        if extras:
            items["extras"] = ocp.args.StandardSave({k: np.asarray(v) for k, v in extras.items()})
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        if wait if wait is not None else not self.asynchronous:
            self.manager.wait_until_finished()
            # Orbax adds this deliberate wait to the time the *next* save reports as "waiting
            # for previous save ... consider checkpointing less frequently": not so here.
            if hasattr(self.manager, "_wait_for_prev_save_duration"):
                self.manager._wait_for_prev_save_duration = 0.0

    def _restore_step(self, step: int, state_target):
        items = {"state": ocp.args.StandardRestore(state_target)}
        has_extras = os.path.isdir(os.path.join(self.directory, str(step), "extras"))
        if has_extras:
            items["extras"] = ocp.args.StandardRestore()
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        extras = {k: np.asarray(v) for k, v in out["extras"].items()} if has_extras else {}
        return out["state"], extras

    def restore(self, state_target, step: int | None = None):
        """Restores into the structure/shardings of `state_target` (abstract arrays are fine).

        Without `step`, tries the newest checkpoint first and, if it cannot be read (partial
        or corrupted files), falls back to the next older one, with a one-sentence warning per
        skipped checkpoint once an older one has been read. Unless read-only, the skipped
        newer checkpoints are then moved to `<dir>_unreadable/` so the run can save those
        steps again. When no checkpoint can be read, nothing is moved and the error says why.

        Returns:
          (state, extras, step).
        """
        steps = [step] if step is not None else sorted(self.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        failed = []
        for s in steps:
            try:
                state, extras = self._restore_step(s, state_target)
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: try the next
                failed.append((s, e))
                continue
            for bad, e in failed:
                # One sentence, no library repr: which checkpoint, why in plain words, what
                # happens instead.
                print(
                    f"warning: checkpoint {self.directory}/{bad} cannot be read "
                    f"({_reason(e)}); using step {s} instead"
                    + (
                        ""
                        if self.read_only
                        else f", and moving {bad} to {self.directory}_unreadable/"
                    ),
                    file=sys.stderr,
                    flush=True,
                )
            if failed and not self.read_only:
                self._set_aside([bad for bad, _ in failed])
            return state, extras, s
        listed = ", ".join(str(s) for s, _ in failed)
        raise ValueError(
            f"no checkpoint in {self.directory} (steps {listed}) can be restored into the model "
            f"this config builds: {_reason(failed[0][1])}. A checkpoint written with another "
            "model config needs that config (see config.json in the workdir) or a new --workdir"
        )

    def _set_aside(self, bad_steps: list[int]) -> None:
        """Moves unreadable newer checkpoints out of the way (to `<dir>_unreadable/`), so the
        resumed run can save those steps again; nothing is deleted."""
        if jax.process_index() == 0:
            aside = self.directory + "_unreadable"
            os.makedirs(aside, exist_ok=True)
            for s in bad_steps:
                dst = os.path.join(aside, f"{s}-{int(time.time())}")
                shutil.move(os.path.join(self.directory, str(s)), dst)
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _reason(e: BaseException) -> str:
    """Why a checkpoint could not be restored, in words (Orbax/TensorStore errors carry
    multi-line reprs of their internals)."""
    text = f"{type(e).__name__}: {e}".lower()
    if isinstance(e, FileNotFoundError) or "not found" in text or "no such file" in text:
        return "files are missing"
    if any(w in text for w in ("shape", "structure", "mismatch", "dtype", "keys")):
        return "its arrays do not match the model this config builds"
    return "its files are truncated or corrupted"


class BestCheckpointer:
    """The best checkpoint by a named evaluator metric, kept apart from the last N.

    Orbax's own best-checkpoint policy (`best_fn`/`best_mode`, `max_to_keep=1`) decides what
    is kept; the metrics of every candidate are stored with it, so a resumed run keeps
    comparing against the true best so far.
    """

    def __init__(self, directory: str, metric: str, mode: str = "max", *, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self.metric = metric
        if read_only:
            logging.getLogger("absl").addFilter(_QUIET_READ_ONLY)  # idempotent
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=None if read_only else 1,
                create=not read_only,
                read_only=read_only,
                best_fn=lambda m: float(m[metric]),
                best_mode=mode,
                keep_checkpoints_without_metrics=False,
            ),
        )

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def save(self, step: int, state, metrics: dict[str, float]) -> None:
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
            metrics={k: float(v) for k, v in metrics.items()},
        )

    def restore(self, state_target, step: int | None = None):
        """(state, step) of the best checkpoint (or of `step` if given)."""
        s = self.best_step() if step is None else step
        if s is None:
            raise FileNotFoundError(f"no best checkpoint in {self.directory}")
        out = self.manager.restore(
            s, args=ocp.args.Composite(state=ocp.args.StandardRestore(state_target))
        )
        return out["state"], s

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
