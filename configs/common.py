"""Pieces shared by the config recipes."""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
    """Parses `key=value,flag` strings after the colon in `--config=file.py:arg`.

    Each keyword gives a default whose type the value is converted to; a bare name sets a
    bool to True. Unknown names are errors.
    """
    out = ml_collections.ConfigDict(spec)
    if not arg:
        return out
    for part in arg.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in spec:
            raise ValueError(f"unknown config argument {name!r}; known: {sorted(spec)}")
        default = spec[name]
        if not value:
            if not isinstance(default, bool):
                raise ValueError(f"config argument {name!r} needs a value ({name}=...)")
            out[name] = True
        elif isinstance(default, bool):
            out[name] = value.lower() in ("1", "true", "yes")
        else:
            out[name] = type(default)(value)
    return out


def base_schedule() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            warmup_steps=0,
            decay="constant",  # constant | cosine | step | plateau
            decay_steps=(),
            decay_factor=0.1,
            # decay="plateau" (PyTorch's ReduceLROnPlateau, jaxmr.train.optim.plateau_decay):
            # the loss averaged over plateau_steps steps (0: one epoch); the learning rate x
            # decay_factor after more than plateau_patience averages without improvement.
            plateau_steps=0,
            plateau_patience=0,
            log_every_steps=100,
            checkpoint_every_steps=1000,
            keep_checkpoints=3,
            # False: each save returns once the checkpoint is committed (0.3-0.7 s on a 2-core
            # CPU for the iIVAE states), so a kill right after it cannot lose it; True: Orbax
            # commits in the background while training goes on (large states, fast disks).
            async_checkpoints=False,
        )
    )


def base_optim(learning_rate: float = 1e-3) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=learning_rate,
            b1=0.9,
            b2=0.999,
            weight_decay=0.0,
            grad_clip_norm=0.0,
        )
    )
