"""Optimiser and learning-rate schedule from `config.optim` / `config.schedule`."""

from __future__ import annotations

import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
DECAYS = ("constant", "cosine", "step")


def build_schedule(schedule_cfg, base_lr: float, total_steps: int) -> optax.Schedule:
    """Linear warm-up then constant, cosine or step (x`decay_factor` at `decay_steps`) decay."""
    warmup = int(schedule_cfg.warmup_steps)
    kind = schedule_cfg.decay
    if kind not in DECAYS:
        raise ValueError(f"config.schedule.decay must be one of {DECAYS}, got {kind!r}")
    if kind == "constant":
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


def build_optimizer(optim_cfg, schedule_cfg, total_steps: int) -> optax.GradientTransformation:
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
    return opt
