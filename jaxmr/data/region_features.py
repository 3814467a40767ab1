"""A fixed, seeded random convolutional net that turns RGB images into a grid of region
features, standing in for the bottom-up-attention detector of the SCAN/NCR family.

The published features are 36 regions x 2048 per image; here the regions are the cells of a
6 x 6 grid and the net is three random 3x3 conv + ReLU + 2x2 average-pool stages, so an
image of side ``6 * 2**3 = 48`` px gives ``[36, F]`` float32 features. The first layer also
sees two coordinate channels (CoordConv: x and y in [-1, 1]), so that a region's features
depend on *where* its content is through the ReLUs; without them the regions' features
would be translation-equivariant and a mean over regions (the family's pooled code) could
not tell a "top left" object from a "bottom right" one.

The weights are He-normal from ``np.random.default_rng(net_seed)`` (biases N(0, 0.1²)),
independent of the data seed, so every dataset written with one ``net_seed`` lives in the
same feature space. Nothing is trained.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

NET_SEED = 20240611
GRID = 6  # regions per side: 6 x 6 = 36, the field's region count
N_STAGES = 3
IMAGE_SIZE = GRID * 2**N_STAGES  # 48 px
HIDDEN_CHANNELS = (32, 64)
_CHUNK = 256  # images per jitted call; the last chunk is padded to this size


def random_conv_weights(feature_dim: int, *, net_seed: int = NET_SEED) -> list[tuple]:
    """He-normal ``(kernel [3, 3, C_in, C_out], bias [C_out])`` of the three stages (HWIO)."""
    rng = np.random.default_rng(net_seed)
    channels = (5, *HIDDEN_CHANNELS, feature_dim)  # RGB + 2 coordinate channels
    weights = []
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        std = np.sqrt(2.0 / (9 * c_in))
        kernel = (std * rng.standard_normal((3, 3, c_in, c_out))).astype(np.float32)
        bias = (0.1 * rng.standard_normal(c_out)).astype(np.float32)
        weights.append((kernel, bias))
    return weights


def _coord_channels(size: int) -> np.ndarray:
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs, ys], axis=-1)  # [H, W, 2]


@jax.jit
def _features(images: jax.Array, coords: jax.Array, weights: list) -> jax.Array:
    """``[B, H, W, 3]`` float in [0, 1] → ``[B, GRID², F]``."""
    b = images.shape[0]
    x = (images - 0.5) / 0.25
    x = jnp.concatenate([x, jnp.broadcast_to(coords, (b, *coords.shape))], axis=-1)
    for kernel, bias in weights:
        x = jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        x = jax.nn.relu(x + bias)
        h, w, c = x.shape[1:]
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return x.reshape(b, -1, x.shape[-1])


def region_features(
    images: np.ndarray, *, feature_dim: int = 128, net_seed: int = NET_SEED
) -> np.ndarray:
    """Region features of images through the fixed random net.

    Args:
        images: ``[N, 48, 48, 3]`` uint8 (0-255) or float (0-1) RGB.
        feature_dim: F, channels of the last stage.
        net_seed: seed of the net's weights.

    Returns:
        ``[N, 36, F]`` float32 (non-negative: average-pooled ReLU outputs, like the field's).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(
            f"images must be [N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3], got shape {images.shape}"
        )
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    weights = [
        (jnp.asarray(k), jnp.asarray(b))
        for k, b in random_conv_weights(feature_dim, net_seed=net_seed)
    ]
    coords = jnp.asarray(_coord_channels(IMAGE_SIZE))
    n = images.shape[0]
    out = np.empty((n, GRID * GRID, feature_dim), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        chunk = images[start : start + _CHUNK].astype(np.float32)
        m = chunk.shape[0]
        if m < _CHUNK:  # fixed shapes: one compilation for every chunk
            chunk = np.concatenate([chunk, np.zeros((_CHUNK - m, *chunk.shape[1:]), np.float32)])
        out[start : start + m] = np.asarray(_features(jnp.asarray(chunk), coords, weights))[:m]
    return out
