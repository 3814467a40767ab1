"""Image tower: `transformers` Flax ResNet from a local folder, or random init from a config.

The tower maps ``uint8 [B, H, W, 3]`` images (as stored by the Recipe1M TFDS builder) to
globally average-pooled ResNet features ``[B, C]``. Pretrained weights are read only from a
local folder (``local_files_only=True``); random initialisation happens only when asked for
explicitly (``random_init=True``), so a missing path can never silently train from scratch.
Users with precomputed image features skip this tower (see :mod:`jaxmr.data.features`).

Frozen towers (``trainable=False``) stop gradients to the parameters and always run batch
norm in inference mode; trainable towers in ``train=True`` mode also return the updated
batch statistics, which the caller stores back into ``variables["batch_stats"]``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tiny_resnet_config(**overrides: Any) -> Any:
    """A two-stage basic-block ResNet small enough for CPU tests (~10k parameters).

    Args:
        **overrides: ``transformers.ResNetConfig`` fields to change.

    Returns:
        ``transformers.ResNetConfig``.
    """
    from transformers import ResNetConfig  # noqa: PLC0415 (heavy import)

    kwargs = dict(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        hidden_act="relu",
    )
    kwargs.update(overrides)
    return ResNetConfig(**kwargs)


@dataclasses.dataclass
class ImageTower:
    """A Flax ResNet, its variables and its input normalisation.

    Attributes:
        model: the ``transformers.FlaxResNetModel`` (config and Linen module).
        variables: ``{"params": ..., "batch_stats": ...}`` pytree.
        trainable: False: gradients to ``variables`` are stopped and batch norm stays in
            inference mode.
        mean: per-channel mean of [0, 1] pixels, subtracted before the network.
        std: per-channel std, divided by.
    """

    model: Any
    variables: Any
    trainable: bool
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    _embed_jit: Any = dataclasses.field(default=None, init=False, repr=False)

    @property
    def dim(self) -> int:
        """Size of the pooled feature (last stage width)."""
        return int(self.model.config.hidden_sizes[-1])

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``config.json`` and ``flax_model.msgpack`` (current variables) to ``path``."""
        self.model.save_pretrained(os.fspath(path), params=self.variables)

    def preprocess(self, images: Any) -> jax.Array:
        """``uint8 [B, H, W, 3]`` -> normalised float32 ``[B, H, W, 3]``."""
        x = jnp.asarray(images, jnp.float32) / 255.0
        return (x - jnp.asarray(self.mean)) / jnp.asarray(self.std)

    def embed(self, variables: Any, images: Any, *, train: bool = False) -> Any:
        """Pooled ResNet features; pure in ``variables`` (jit/grad friendly).

        Args:
            variables: ``{"params", "batch_stats"}``.
            images: ``uint8 [B, H, W, 3]`` (or float already in [0, 255]).
            train: batch norm in training mode (trainable towers only).

        Returns:
            ``[B, dim]`` features; with ``train=True``, ``(features, new_batch_stats)``.
        """
        if train and not self.trainable:
            raise ValueError("train=True needs a trainable tower (load with trainable=True)")
        if not self.trainable:
            variables = jax.lax.stop_gradient(variables)
        x = self.preprocess(images)
        # The module takes NHWC; the transformers wrapper's NCHW transpose is skipped.
        out = self.model.module.apply(
            {"params": variables["params"], "batch_stats": variables["batch_stats"]},
            x,
            not train,
            False,
            True,
            mutable=["batch_stats"] if train else False,
        )
        if train:
            out, updates = out
            return out.pooler_output[:, :, 0, 0], updates["batch_stats"]
        return out.pooler_output[:, :, 0, 0]


def _normalisation(path: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(cfg):
        with open(cfg, encoding="utf-8") as f:
            pre = json.load(f)
        return tuple(pre.get("image_mean", IMAGENET_MEAN)), tuple(
            pre.get("image_std", IMAGENET_STD)
        )
    return IMAGENET_MEAN, IMAGENET_STD


def describe_random_resnet(cfg: Any, params: Any, seed: int, image_size: int) -> str:
    """One line naming the randomly initialised network: its shape, size and features."""
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params["params"]))
    return (
        f"random-init ResNet, NO pretrained weights ({cfg.layer_type} blocks, "
        f"depths {list(cfg.depths)}, widths {list(cfg.hidden_sizes)}, "
        f"stem {cfg.embedding_size}, {cfg.hidden_act}; {n:,} parameters; seed {seed}; "
        f"{image_size} px input -> {cfg.hidden_sizes[-1]}-d pooled features)"
    )


def load_image_tower(
    path: str | os.PathLike | None = None,
    *,
    config: Any = None,
    random_init: bool = False,
    seed: int = 0,
    image_size: int = 224,
    trainable: bool = False,
    dtype: Any = jnp.float32,
) -> ImageTower:
    """Loads a Flax ResNet from a local folder, or initialises one at random on request.

    Args:
        path: folder with ``config.json`` and ``flax_model.msgpack`` (or
            ``model.safetensors``), e.g. written by ``FlaxResNetModel.save_pretrained``;
            ``preprocessor_config.json`` there sets the normalisation.
        config: ``transformers.ResNetConfig`` for random init (default
            :func:`tiny_resnet_config`).
        random_init: initialise at random instead of loading (``path`` must be None).
        seed: random-init seed.
        image_size: input side used to initialise shapes.
        trainable: fine-tune (True) or freeze (False).
        dtype: computation dtype.

    Returns:
        An :class:`ImageTower`.

    Raises:
        ValueError: no path and no ``random_init``, or both.
        FileNotFoundError: naming the folder and what it lacks.
    """
    from transformers import FlaxResNetModel  # noqa: PLC0415 (heavy import)

    if path is None and not random_init:
        raise ValueError(
            "no pretrained image model path given; set the path to a local Flax ResNet "
            "folder, or ask for random_init=True explicitly"
        )
    if path is not None and random_init:
        raise ValueError("give either a pretrained path or random_init=True, not both")
    if random_init:
        cfg = config if config is not None else tiny_resnet_config()
        model = FlaxResNetModel(cfg, dtype=dtype, _do_init=False)
        # One jitted init instead of transformers' eager one (one compile per layer), with
        # an "rbg" key: on CPU, XLA compiles the threefry bits of every initialiser for
        # seconds (8 s vs 1.4 s for this tiny net, jax 0.10.2). rbg streams are
        # deterministic per seed and backend; random init is for tests and smoke runs.
        params = jax.jit(model.init_weights, static_argnums=1)(
            jax.random.key(seed, impl="rbg"), (1, image_size, image_size, 3)
        )
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        logger.warning("image tower: %s", describe_random_resnet(cfg, params, seed, image_size))
    else:
        path = os.fspath(os.path.expanduser(path))
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(
                f"{path} has no config.json; expected a Flax ResNet folder with config.json "
                "and flax_model.msgpack (FlaxResNetModel.save_pretrained writes one)"
            )
        if os.path.isfile(os.path.join(path, "flax_model.msgpack")):
            # Flax weights: skip the random init that would be overwritten anyway.
            model, params = FlaxResNetModel.from_pretrained(
                path, local_files_only=True, dtype=dtype, _do_init=False
            )
        else:  # safetensors/PyTorch layouts are converted against initialised params
            model = FlaxResNetModel.from_pretrained(path, local_files_only=True, dtype=dtype)
            params = model.params
        mean, std = _normalisation(path)
    variables = {"params": params["params"], "batch_stats": params["batch_stats"]}
    return ImageTower(model=model, variables=variables, trainable=trainable, mean=mean, std=std)


def resnet_features(tower: ImageTower, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Host-side convenience: pooled features of many images with the current variables.

    Args:
        tower: the tower.
        images: ``uint8 [N, H, W, 3]``.
        batch_size: images per jitted call (the last batch is padded).

    Returns:
        ``[N, dim]`` float32.
    """
    if tower._embed_jit is None:
        # mean/std are read at trace time: changing them later needs a fresh tower.
        tower._embed_jit = jax.jit(lambda v, x: tower.embed(v, x))
    out = []
    for s in range(0, len(images), batch_size):
        chunk = np.asarray(images[s : s + batch_size])
        pad = batch_size - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        out.append(np.asarray(tower._embed_jit(tower.variables, chunk))[: batch_size - pad])
    return np.concatenate(out) if out else np.zeros((0, tower.dim), np.float32)
