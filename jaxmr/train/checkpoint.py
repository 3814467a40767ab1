"""Orbax checkpointing (the only Orbax importer): keep N, save at chosen steps, auto-resume,
fall back past a corrupted newest checkpoint.

Each checkpoint holds the train state and, when a task's epoch hook attached per-example
values to the loader, those values too (`extras`), so a resumed run continues bit-for-bit.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager`.

    Orbax writes each step into a temporary directory and renames it when complete, so a
    crash or kill mid-save leaves the previous checkpoints intact; the temporary directory is
    never taken for a checkpoint.
    """

    def __init__(self, directory: str, *, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(
        self, step: int, state, *, extras: dict[str, np.ndarray] | None = None, wait: bool = False
    ) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if extras:
            items["extras"] = ocp.args.StandardSave({k: np.asarray(v) for k, v in extras.items()})
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        if wait:
            self.manager.wait_until_finished()

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
        or corrupted files), warns and falls back to the next older one.

        Returns:
          (state, extras, step).
        """
        steps = [step] if step is not None else sorted(self.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        errors = []
        for s in steps:
            try:
                state, extras = self._restore_step(s, state_target)
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: try the next
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                errors.append(f"step {s}: {type(e).__name__}: {first}")
                if step is None and s != steps[-1]:
                    print(
                        f"warning: checkpoint {self.directory}/{s} is unreadable "
                        f"({errors[-1]}); falling back to the previous checkpoint",
                        file=sys.stderr,
                        flush=True,
                    )
                continue
            if step is None and s != steps[0]:
                self._set_aside([t for t in steps if t > s])
            return state, extras, s
        raise ValueError(
            f"no readable checkpoint in {self.directory} matches the state built from this "
            f"config (was it written with another model config?): {'; '.join(errors)}"
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
                print(f"warning: moved unreadable checkpoint {s} to {dst}", file=sys.stderr)
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class BestCheckpointer:
    """The best checkpoint by a named evaluator metric, kept apart from the last N.

    Orbax's own best-checkpoint policy (`best_fn`/`best_mode`, `max_to_keep=1`) decides what
    is kept; the metrics of every candidate are stored with it, so a resumed run keeps
    comparing against the true best so far.
    """

    def __init__(self, directory: str, metric: str, mode: str = "max"):
        self.directory = os.path.abspath(directory)
        self.metric = metric
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                create=True,
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
