"""Optimiser and learning-rate schedule from `config.optim` / `config.schedule`."""

from __future__ import annotations

import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
DECAYS = ("constant", "cosine", "step", "plateau")


def build_schedule(schedule_cfg, base_lr: float, total_steps: int) -> optax.Schedule:
    """Linear warm-up then constant, cosine or step (x`decay_factor` at `decay_steps`) decay.
    `plateau` is constant here: its decay reads the loss and is applied by `build_optimizer`."""
    warmup = int(schedule_cfg.warmup_steps)
    kind = schedule_cfg.decay
    if kind not in DECAYS:
        raise ValueError(f"config.schedule.decay must be one of {DECAYS}, got {kind!r}")
    if kind in ("constant", "plateau"):
        main = optax.constant_schedule(base_lr)
    elif kind == "cosine":
        main = optax.cosine_decay_schedule(base_lr, max(total_steps - warmup, 1))
    else:
        boundaries = {
            int(s) - warmup: float(schedule_cfg.decay_factor) for s in schedule_cfg.decay_steps
        }
        main = optax.piecewise_constant_schedule(base_lr, boundaries)
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), main], [warmup])


def plateau_decay(
    schedule_cfg, steps_per_epoch: int | None, base_lr: float
) -> optax.GradientTransformation:
    """PyTorch's `ReduceLROnPlateau` (mode min, relative threshold 1e-4, no cooldown) as a
    scale on the updates: the training loss is averaged over `schedule.plateau_steps` steps
    (0: one epoch, `steps_per_epoch`), and after more than `schedule.plateau_patience` such
    averages without a relative improvement of 1e-4 on the best one the learning rate is
    multiplied by `schedule.decay_factor`. The train step passes the loss as `value`
    (jaxmr.train.step). Scaling Adam's update is scaling its learning rate.

    optax.contrib.reduce_on_plateau counts patience differently (it decays when the count of
    averages without improvement *equals* `patience`, so its patience 0 decays after every
    improvement): PyTorch's patience p is its p + 1. The scale stops at `min_scale` = 1e-8 /
    learning rate, where PyTorch's `eps` = 1e-8 stops its decay."""
    steps = int(schedule_cfg.get("plateau_steps", 0)) or steps_per_epoch
    if not steps or steps < 1:
        raise ValueError(
            "config.schedule.decay='plateau' averages the loss over schedule.plateau_steps "
            "steps; 0 (one epoch) needs a task that knows its epoch length"
        )
    patience = int(schedule_cfg.get("plateau_patience", 0))
    if patience < 0:
        raise ValueError(f"config.schedule.plateau_patience must be >= 0, got {patience}")
    factor = float(schedule_cfg.decay_factor)
    if not 0.0 < factor < 1.0:
        raise ValueError(f"config.schedule.decay_factor must be in (0, 1), got {factor}")
    return optax.contrib.reduce_on_plateau(
        factor=factor,
        patience=patience + 1,
        rtol=1e-4,
        accumulation_size=steps,
        min_scale=min(1e-8 / base_lr, 1.0) if base_lr > 0 else 0.0,
    )


def build_optimizer(
    optim_cfg, schedule_cfg, total_steps: int, *, steps_per_epoch: int | None = None
) -> optax.GradientTransformation:
    """The optimiser of `config.optim` on the schedule of `config.schedule`. With
    `schedule.decay="plateau"` the result reads the loss: its `update` takes `value=loss`."""
    name = optim_cfg.name
    if name not in OPTIMIZERS:
        raise ValueError(f"config.optim.name must be one of {OPTIMIZERS}, got {name!r}")
    lr = build_schedule(schedule_cfg, float(optim_cfg.learning_rate), total_steps)
    # inject_hyperparams keeps the current learning rate in the optimiser state, where the
    # train step reads it for the logs (`lr/<group>`, jaxmr.train.step.learning_rates); the
    # updates are the same as without it.
    if name == "adam":
        opt = optax.inject_hyperparams(optax.adam)(lr, b1=optim_cfg.b1, b2=optim_cfg.b2)
    elif name == "adamw":
        opt = optax.inject_hyperparams(optax.adamw)(
            lr, b1=optim_cfg.b1, b2=optim_cfg.b2, weight_decay=optim_cfg.weight_decay
        )
    else:
        opt = optax.inject_hyperparams(optax.sgd)(lr, momentum=optim_cfg.b1 or None)
    if optim_cfg.grad_clip_norm > 0:
        opt = optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip_norm), opt)
    if schedule_cfg.decay == "plateau":
        plateau = plateau_decay(schedule_cfg, steps_per_epoch, float(optim_cfg.learning_rate))
        opt = optax.chain(opt, plateau)
    return opt
