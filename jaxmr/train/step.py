"""Train state, sharded initialisation and the jitted multi-phase train step."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh
from optax import contrib as optax_contrib

from jaxmr.train import mesh as mesh_lib
from jaxmr.train.task import StepContext, Task


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: number of updates applied
    params: dict[str, Any]  # {group: params pytree}
    opt_state: dict[str, Any]  # {group: optax state}
    carry: dict[str, Any]  # non-differentiable carried state (running averages, ...)


def _init(task: Task, key: jax.Array) -> TrainState:
    # init_fn gets the root init key itself, so adding carried state to a task never changes
    # its parameter initialisation.
    params = task.init_fn(key)
    missing = set(task.optimizers) ^ set(params)
    if missing:
        raise ValueError(f"task {task.name}: parameter groups and optimisers differ: {missing}")
    opt_state = {g: task.optimizers[g].init(p) for g, p in params.items()}
    carry = dict(task.init_carry(jax.random.fold_in(key, 1))) if task.init_carry is not None else {}
    owned = {c for p in task.phases for c in p.carries}
    if owned - set(carry):
        raise ValueError(f"task {task.name}: phases own unknown carried state {owned - set(carry)}")
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, carry=carry
    )


def abstract_state(task: Task, mesh: Mesh) -> TrainState:
    """Shapes, dtypes and (replicated) shardings of the state, without allocating it."""
    shapes = jax.eval_shape(lambda k: _init(task, k), jax.random.key(0))
    rep = mesh_lib.replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes)


def init_state(task: Task, key: jax.Array, mesh: Mesh) -> TrainState:
    """Jitted init writing straight into replicated device buffers (eval_shape first, so no
    host copy of the parameters is ever made)."""
    target = abstract_state(task, mesh)
    shardings = jax.tree.map(lambda s: s.sharding, target)
    return jax.jit(lambda k: _init(task, k), out_shardings=shardings)(key)


def _global_norm(tree) -> jax.Array:
    return optax.tree.norm(tree) if jax.tree.leaves(tree) else jnp.zeros(())


def _reads_value(opt_state) -> bool:
    """Whether the optimiser of `opt_state` takes the loss as `value` (it holds a plateau
    decay, `schedule.decay="plateau"`)."""
    return any(isinstance(x, _PLATEAU_STATES) for x in _state_nodes(opt_state))


def _state_nodes(s):
    yield s
    if isinstance(s, (tuple, list)):
        for x in s:
            yield from _state_nodes(x)
    elif isinstance(s, dict):
        for x in s.values():
            yield from _state_nodes(x)


def learning_rates(task: Task, opt_state: Mapping[str, Any]) -> dict[str, jax.Array]:
    """The current learning rate of every group whose optimiser was built with
    `optax.inject_hyperparams` (others are not observable from their state), times the scale
    of a plateau decay where the optimiser has one."""
    out = {}
    for g, s in opt_state.items():
        for leaf in jax.tree.leaves(s, is_leaf=lambda x: hasattr(x, "hyperparams")):
            if hasattr(leaf, "hyperparams") and "learning_rate" in leaf.hyperparams:
                out[f"lr/{g}"] = jnp.asarray(leaf.hyperparams["learning_rate"], jnp.float32)
                break
        if f"lr/{g}" in out:
            for node in _state_nodes(s):
                if isinstance(node, _PLATEAU_STATES):
                    out[f"lr/{g}"] = out[f"lr/{g}"] * jnp.asarray(node.scale, jnp.float32)
    return out


# The state of `optax.contrib.reduce_on_plateau` (jaxmr.train.optim.plateau_decay).
_PLATEAU_STATES = (optax_contrib.ReduceLROnPlateauState,)


# Optimiser states that hold a learning-rate schedule's clock (`optax.inject_hyperparams`).
_SCHEDULE_STATES = tuple(
    t
    for t in (
        getattr(optax, "InjectHyperparamsState", None),
        getattr(optax, "InjectStatefulHyperparamsState", None),
    )
    if t is not None
)


def _is_schedule_state(x) -> bool:
    return isinstance(x, _SCHEDULE_STATES)


def idle_opt_state(new_state, old_state):
    """The optimiser state after an update a phase declared idle (`aux["active"]` False): every
    leaf of `old_state` (moments and the optimiser's own update count, as if no update had been
    asked for), except the learning-rate schedules' clocks (`count`, `hyperparams`), which
    follow the step as epochs do: a schedule in steps stays a schedule in epochs."""

    def pick(new, old):
        if _is_schedule_state(new):
            return new._replace(inner_state=idle_opt_state(new.inner_state, old.inner_state))
        return old

    return jax.tree.map(pick, new_state, old_state, is_leaf=_is_schedule_state)


def run_phase(phase, optimizers, params, opt_state, carry, batch, phase_key, *, step, epoch):
    """One phase's update(s) (all its repeats), in place on the dicts `params`, `opt_state` and
    `carry`; returns the phase's measurements (`<phase>/...`, those of its last repeat)."""
    for r in range(phase.repeats):
        rkey = phase_key if phase.repeats == 1 else jax.random.fold_in(phase_key, r)
        ctx = StepContext(step=step, epoch=epoch, key=rkey, carry=carry)

        def objective(sub, phase=phase, ctx=ctx):
            return phase.loss_fn({**params, **sub}, batch, ctx)

        sub = {g: params[g] for g in phase.groups}
        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(sub)
        aux = dict(aux)
        new_carry = aux.pop("carry", {})
        active = aux.pop("active", None)
        foreign = set(new_carry) - set(phase.carries)
        if foreign:
            raise ValueError(
                f"phase {phase.name!r} updates carried state it does not own: "
                f"{sorted(foreign)} (declare it in Phase.carries)"
            )
        carry.update(jax.lax.stop_gradient(new_carry))
        updates_all = {}
        for g in phase.groups:
            # The loss, for optimisers that read it (`schedule.decay="plateau"`).
            value = {"value": loss} if _reads_value(opt_state[g]) else {}
            updates, new_opt = optimizers[g].update(grads[g], opt_state[g], sub[g], **value)
            new_params = optax.apply_updates(sub[g], updates)
            if active is not None:  # an idle update leaves the group as it was
                on = jnp.asarray(active, bool)
                idle = idle_opt_state(new_opt, opt_state[g])
                new_opt = jax.tree.map(partial(jnp.where, on), new_opt, idle)
                new_params = jax.tree.map(partial(jnp.where, on), new_params, sub[g])
                updates = jax.tree.map(lambda u, on=on: jnp.where(on, u, 0), updates)
            opt_state[g], params[g] = new_opt, new_params
            updates_all[g] = updates
    # Logged values are those of the phase's last repeat.
    p = phase.name
    measurements = {f"{p}/loss": loss}
    if active is not None:
        measurements[f"{p}/active"] = jnp.asarray(active, jnp.float32)
    measurements.update({f"{p}/{k}": v for k, v in aux.items()})
    measurements[f"{p}/grad_norm"] = _global_norm(grads)
    measurements[f"{p}/update_norm"] = _global_norm(updates_all)
    measurements[f"{p}/param_norm"] = _global_norm({g: params[g] for g in phase.groups})
    return measurements


def make_train_step(task: Task, *, steps_per_epoch: int = 1):
    """Returns `train_step(state, batch, root_key) -> (state, measurements)` (not jitted).

    Randomness: the step's key is fold_in(root_key, step), then fold_in(., phase index), then
    fold_in(., repeat) for repeated phases, so a run is reproducible and resumable whatever
    the logging or checkpoint cadence.
    """
    spe = max(int(steps_per_epoch), 1)

    def train_step(state: TrainState, batch: Mapping[str, jax.Array], root_key: jax.Array):
        key = jax.random.fold_in(root_key, state.step)
        epoch = state.step // spe
        params = dict(state.params)
        opt_state = dict(state.opt_state)
        carry = dict(state.carry)
        measurements = {}
        for i, phase in enumerate(task.phases):
            phase_key = jax.random.fold_in(key, i)
            measurements.update(
                run_phase(
                    phase,
                    task.optimizers,
                    params,
                    opt_state,
                    carry,
                    batch,
                    phase_key,
                    step=state.step,
                    epoch=epoch,
                )
            )
        measurements.update(learning_rates(task, opt_state))
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state, carry=carry)
        return new_state, measurements

    return train_step


def jit_train_step(task: Task, mesh: Mesh, state_shardings, *, steps_per_epoch: int = 1):
    """jit with the batch sharded over `data`, replicated state (donated) and measurements."""
    rep = mesh_lib.replicated(mesh)
    return jax.jit(
        make_train_step(task, steps_per_epoch=steps_per_epoch),
        in_shardings=(state_shardings, mesh_lib.batch_sharding(mesh), rep),
        out_shardings=(state_shardings, rep),
        donate_argnums=(0,),
    )
