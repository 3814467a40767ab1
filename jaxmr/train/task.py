"""The trainer's contract: what a method hands the one trainer.

A method is a `Task`: parameter groups with their optimisers, update `Phase`s run in order
inside ONE jitted step, optional non-differentiable carried state, an optional sampler, epoch
hooks and evaluators. The trainer imports no method; entry points look the task up
(`jaxmr.tasks.build_task`) and pass it in.

Contract, point by point (each has a test in `tests/train/test_contract.py`):

1. `Task`, `Phase`, `StepContext`, `Sampler`, `Evaluator` live here, in the trainer package.
2. A phase's loss is `loss_fn(params, batch, ctx) -> (loss, aux)`; `ctx` (a `StepContext`)
   carries the update's `step` (0-based, traced int32), its `epoch` (`step // steps_per_epoch`
   of the sampler) and a `key`, so warm-ups and ramped weights are plain code.
3. Non-differentiable state (`Task.init_carry(key) -> dict`), e.g. running averages, batch
   statistics, memory banks, lives in `TrainState.carry` and is checkpointed with the rest.
   A phase reads it as `ctx.carry` and updates the entries it owns (`Phase.carries`) by
   returning them under `aux["carry"]`; any other name is an error at trace time.
4. `epoch_hook(state, sampler, epoch) -> dict | None` runs on the host at the start of every
   epoch; the scalars it returns are logged under `hook/…` (arrays as `name/i`).
5. `Phase.repeats = k` runs a phase k times per step (k estimator updates per encoder update),
   each with its own key; phase names must be unique.
6. `Task.make_sampler(batch_size=, seed=, process_index=, process_count=) -> Sampler`: a task
   may draw its own batches (several captions per image by index, subsets, memory-mapped
   arrays). A sampler's batch is a pure function of the step and of its per-example values,
   which are checkpointed, so resume stays bit-identical.
7. Evaluators may name a metric to keep the best checkpoint by (`Task.best_metric`, with
   `best_mode`), next to the last N; `eval.py --checkpoint=best|latest`.
8. Alternating estimator and encoder updates is done with phases (an estimator phase that
   owns the estimator's group, before or after the encoder phase; after it, the estimator can
   fit on stop-gradient codes the encoder phase passes on through the carry instead of running
   the encoder again, as DisNCL does); the objectives for such phases are in `jaxmr.losses`
   (e.g. `club_estimator_loss`).
9. Evaluators implement `Evaluator`: `run(params) -> dict[str, float]` during training and
   `evaluate(params, out_dir) -> (metrics, figure_paths)` for eval.py.
10. A phase may skip its update for a step by returning a boolean scalar `aux["active"]`
   (traced): when False its groups' parameters and optimiser moments stay as they were (the
   optimiser's update count too), only the learning-rate schedule's clock advances with the
   step. This is how a network of a co-trained pair sits out the rest of an epoch it has
   finished (NCR's epoch is one pass over a per-network subset); logged as `<phase>/active`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np
import optax
from flax import struct

Params = Mapping[str, Any]


@struct.dataclass
class StepContext:
    """What a phase's loss sees besides parameters and batch.

    Attributes:
      step: int32 scalar, the number of updates applied before this one (0-based).
      epoch: int32 scalar, `step // steps_per_epoch` of the task's sampler.
      key: PRNG key for this phase (and repeat) of this step.
      carry: the carried non-differentiable state (read-only; update via `aux["carry"]`).
    """

    step: jax.Array
    epoch: jax.Array
    key: jax.Array
    carry: dict[str, Any]


LossFn = Callable[[Params, Mapping[str, jax.Array], StepContext], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One gradient update inside the step.

    `loss_fn(params, batch, ctx) -> (loss, aux)` is minimised with respect to `params[g]` for g
    in `groups` only; the other groups are constants for it (their gradients are never taken).

    Attributes:
      name: unique within the task; prefixes its logged values (`name/loss`, ...).
      groups: parameter groups this phase updates.
      loss_fn: see above. `aux` is a dict of scalars to log; it may hold `"carry"`: a dict of
        new values for the carried entries this phase owns, and `"active"`: a bool scalar, False
        to skip this update (contract point 10).
      repeats: run the phase this many times per step (e.g. k estimator updates).
      carries: names of carried-state entries this phase may update.
    """

    name: str
    groups: tuple[str, ...]
    loss_fn: LossFn
    repeats: int = 1
    carries: tuple[str, ...] = ()

    def __post_init__(self):
        if self.repeats < 1:
            raise ValueError(f"phase {self.name!r}: repeats must be >= 1, got {self.repeats}")
        if not self.groups:
            raise ValueError(f"phase {self.name!r}: needs at least one parameter group")


@runtime_checkable
class Sampler(Protocol):
    """Host-side batches addressed by step (0-based), this process's slice of the global batch.

    `per_example` values (set by epoch hooks) are saved with checkpoints and restored with
    `set_per_example` before training resumes.
    """

    num_examples: int
    steps_per_epoch: int

    def batch(self, step: int) -> dict[str, np.ndarray]: ...

    @property
    def per_example(self) -> dict[str, np.ndarray]: ...

    def set_per_example(self, name: str, values: np.ndarray) -> None: ...


class Evaluator:
    """Base of evaluators: `name`, `every_steps` (0: only at the end), `run` and `evaluate`.

    Subclasses implement `run(params) -> {metric: float}`; `evaluate` (what eval.py calls)
    defaults to `run` with no figures and may be overridden to write artifacts to `out_dir`.
    """

    name: str = "eval"
    every_steps: int = 0

    def run(self, params) -> dict[str, float]:
        raise NotImplementedError

    def evaluate(self, params, out_dir: str) -> tuple[dict[str, Any], list[str]]:
        return {f"{self.name}/{k}": v for k, v in self.run(params).items()}, []


@dataclasses.dataclass
class Task:
    """A method, built from a config by a function in `jaxmr.tasks.TASKS`.

    Attributes:
      name: task name (logged).
      init_fn: key -> {group: params}.
      optimizers: {group: optax transformation}; the same groups as `init_fn` returns.
      phases: run in order inside one jitted step.
      predict_fn: (params, batch) -> dict of per-example arrays; jittable.
      train_arrays: equal-length arrays for the default uniform sampler (`ArrayLoader`); may be
        empty when `make_sampler` is given.
      evaluators: `Evaluator`s run every `every_steps` and at the end.
      epoch_hook: (state, sampler, epoch) -> dict | None, run on the host at each epoch start.
      init_carry: key -> dict of carried non-differentiable arrays (default: none).
      make_sampler: builds the task's own sampler (see `Sampler`).
      best_metric: an evaluator result name (`"<evaluator>/<metric>"`) to keep the best
        checkpoint by; `best_mode` is "max" or "min".
      info: free-form facts shown in logs (e.g. `variant`).
    """

    name: str
    init_fn: Callable[[jax.Array], dict[str, Any]]
    optimizers: Mapping[str, optax.GradientTransformation]
    phases: Sequence[Phase]
    predict_fn: Callable[[Params, Mapping[str, jax.Array]], dict[str, jax.Array]]
    train_arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    evaluators: Sequence[Evaluator] = ()
    epoch_hook: Callable[..., dict | None] | None = None
    init_carry: Callable[[jax.Array], dict[str, Any]] | None = None
    make_sampler: Callable[..., Sampler] | None = None
    best_metric: str | None = None
    best_mode: str = "max"
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        names = [p.name for p in self.phases]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"task {self.name}: phase names must be unique, repeated: {dup}")
        if not self.phases:
            raise ValueError(f"task {self.name}: needs at least one phase")
        unknown = sorted({g for p in self.phases for g in p.groups} - set(self.optimizers))
        if unknown:
            raise ValueError(f"task {self.name}: phases update groups without optimiser: {unknown}")
        if self.best_mode not in ("max", "min"):
            raise ValueError(f"task {self.name}: best_mode must be 'max' or 'min'")
        if not self.train_arrays and self.make_sampler is None:
            raise ValueError(f"task {self.name}: give train_arrays or make_sampler")
