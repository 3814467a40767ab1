"""Offline image-text retrieval benchmark with known shared and modality-exclusive factors,
written in the SCAN/NCR precomputed layout (no download).

Generative story (details and reasons in ``docs/scenes.md``). Each image shows one
described object on a textured background with an undescribed distractor:

* **shared** (``SHARED_NAMES``, int): object kind (4), size (2), colour (6), position row (3)
  and column (3): 432 combinations, so at the default test size (1,000 images) an image has
  on average ~2.3 others with the same shared factors, whose captions are true positives;
* **image-exclusive** (``IMAGE_EXCLUSIVE_NAMES``, float): background colour and stripe
  texture (≈90 % of the pixels), a hollow ring of random colour and position, the object's
  rotation and its within-bin position/size/hue jitter, and Gaussian pixel noise;
* **text-exclusive** (per caption, int; see :mod:`jaxmr.data.scene_captions`): template,
  context clause, one synonym per slot, article, drawn independently of the image.

Images are rendered at 48 x 48 with numpy and turned into ``[36, F]`` region features by
the fixed random conv net of :mod:`jaxmr.data.region_features`. Files::

    {root}/scenes_precomp/{train,dev,test}_ims.npy      [N_img, 36, F] float32
    {root}/scenes_precomp/{split}_caps.txt              5 captions per image, in image order
    {root}/scenes_precomp/{split}_factors.npz           ground truth (see write_scenes)
    {root}/vocab/scenes_precomp_vocab.json              SCAN/NCR vocab JSON
    {root}/scenes_precomp/GENERATOR.json                generator version and parameters
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from jaxmr.data import scene_captions as sc
from jaxmr.data.region_features import IMAGE_SIZE, NET_SEED, region_features
from jaxmr.data.shapes import coverage_masks, hue_to_rgb

GENERATOR_VERSION = 1
CAPS_PER_IMAGE = 5
SPLITS = ("train", "dev", "test")
SIZES = {
    "smoke": {"train": 200, "dev": 100, "test": 100},
    "default": {"train": 5000, "dev": 500, "test": 1000},
    "study": {"train": 20000, "dev": 1000, "test": 1000},
}
SHARED_NAMES = ("kind", "size", "colour", "row", "column")
SHARED_CARDINALITIES = (len(sc.KINDS), len(sc.SIZES), len(sc.COLOURS), 3, 3)
IMAGE_EXCLUSIVE_NAMES = (
    "background_r", "background_g", "background_b",
    "texture_contrast", "texture_frequency", "texture_cos2angle", "texture_sin2angle",
    "distractor_x", "distractor_y", "distractor_radius", "distractor_hue_cos",
    "distractor_hue_sin",
    "rotation", "jitter_x", "jitter_y", "jitter_scale", "jitter_hue", "noise_std",
)  # fmt: skip
MARKER = "GENERATOR.json"

_SCALES = ((0.12, 0.15), (0.20, 0.25))  # object half-size (fraction of the side) per size bin
_HUES = (0.0, 0.08, 0.16, 0.33, 0.62, 0.78)  # per colour bin; jitter ±_HUE_JITTER
_HUE_JITTER = 0.02
_BIN_CENTRES = (0.25, 0.5, 0.75)  # row/column bin centres; jitter ±_POS_JITTER
_POS_JITTER = 0.06
_ROTATION = np.pi / 5  # |rotation| < pi/5: under half the square's and cross's period
_RING_RADIUS = (0.07, 0.10)
_RING_WIDTH = 0.35  # ring thickness as a fraction of its radius
_CHUNK = 512  # images rendered and featurised at once (bounds memory)


def sample_scene_factors(n: int, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``(shared [n, 5] int32, image_exclusive [n, 18] float32)``, all independent."""
    shared = np.stack([rng.integers(0, c, size=n) for c in SHARED_CARDINALITIES], axis=1)
    hue = rng.uniform(0.0, 1.0, n)
    sat = rng.uniform(0.0, 0.6, n)
    val = rng.uniform(0.25, 0.85, n)
    background = hue_to_rgb(hue, saturation=1.0) * sat[:, None] + (1 - sat[:, None])
    background = background * val[:, None]
    angle = rng.uniform(0.0, np.pi, n)
    dhue = rng.uniform(0.0, 1.0, n)
    excl = np.column_stack(
        [
            background,
            rng.uniform(0.0, 0.35, n),  # texture contrast
            rng.uniform(2.0, 6.0, n),  # stripe frequency, cycles per image side
            np.cos(2 * angle),
            np.sin(2 * angle),
            rng.uniform(0.1, 0.9, n),  # distractor centre x
            rng.uniform(0.1, 0.9, n),  # distractor centre y
            rng.uniform(*_RING_RADIUS, n),  # distractor radius
            np.cos(2 * np.pi * dhue),
            np.sin(2 * np.pi * dhue),
            rng.uniform(-_ROTATION, _ROTATION, n),
            rng.uniform(-1.0, 1.0, n),  # jitter x, in units of _POS_JITTER
            rng.uniform(-1.0, 1.0, n),  # jitter y
            rng.uniform(0.0, 1.0, n),  # position inside the size bin's scale range
            rng.uniform(-1.0, 1.0, n),  # hue jitter, in units of _HUE_JITTER
            rng.uniform(0.0, 0.08, n),  # pixel noise std
        ]
    )
    return shared.astype(np.int32), excl.astype(np.float32)


def render_scenes(
    shared: np.ndarray, exclusive: np.ndarray, *, rng: np.random.Generator
) -> np.ndarray:
    """Renders ``[n, 48, 48, 3]`` float32 RGB in [0, 1]; ``rng`` draws the stripe phase and
    the pixel noise."""
    shared = np.asarray(shared)
    e = dict(zip(IMAGE_EXCLUSIVE_NAMES, np.asarray(exclusive, np.float64).T, strict=True))
    n, size = shared.shape[0], IMAGE_SIZE
    centres = ((np.arange(size) + 0.5) / size).astype(np.float32)
    ys, xs = centres[None, :, None], centres[None, None, :]
    # Background: colour times (1 + contrast · sin(stripes)).
    # Stripe angle a in [0, pi) from (cos 2a, sin 2a): sin a >= 0, sign(cos a) = sign(sin 2a).
    cos_a = np.sqrt((1 + e["texture_cos2angle"]) / 2) * np.sign(e["texture_sin2angle"])
    sin_a = np.sqrt((1 - e["texture_cos2angle"]) / 2)
    freq, phase = e["texture_frequency"], rng.uniform(0, 2 * np.pi, n)
    proj = cos_a[:, None, None] * xs + sin_a[:, None, None] * ys
    wave = np.sin(2 * np.pi * freq[:, None, None] * proj + phase[:, None, None])
    stripes = 1.0 + e["texture_contrast"][:, None, None] * wave
    bg = np.stack([e["background_r"], e["background_g"], e["background_b"]], axis=1)
    image = (stripes[..., None] * bg[:, None, None, :]).astype(np.float32)
    # Distractor: a hollow ring (never described), drawn under the object.
    radius = e["distractor_radius"]
    dist = np.hypot(xs - e["distractor_x"][:, None, None], ys - e["distractor_y"][:, None, None])
    ring_px = np.abs(dist - radius[:, None, None]) - radius[:, None, None] * _RING_WIDTH / 2
    ring = np.clip(0.5 - ring_px * size, 0.0, 1.0)[..., None]
    ring_hue = np.arctan2(e["distractor_hue_sin"], e["distractor_hue_cos"]) / (2 * np.pi) % 1.0
    image = image * (1 - ring) + ring * hue_to_rgb(ring_hue)[:, None, None, :]
    # The described object.
    lo, hi = np.array(_SCALES)[shared[:, 1]].T
    factors = np.column_stack(
        [
            shared[:, 0],
            lo + (hi - lo) * e["jitter_scale"],
            e["rotation"],
            np.array(_BIN_CENTRES)[shared[:, 4]] + _POS_JITTER * e["jitter_x"],
            np.array(_BIN_CENTRES)[shared[:, 3]] + _POS_JITTER * e["jitter_y"],
            (np.array(_HUES)[shared[:, 2]] + _HUE_JITTER * e["jitter_hue"]) % 1.0,
        ]
    )
    cover = coverage_masks(factors, size=size)[..., None]
    image = image * (1 - cover) + cover * hue_to_rgb(factors[:, 5])[:, None, None, :]
    image += e["noise_std"][:, None, None, None] * rng.standard_normal(image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _generate_split(n: int, *, seed_seq: np.random.SeedSequence, feature_dim: int) -> dict:
    factor_ss, text_ss, render_ss = seed_seq.spawn(3)
    shared, exclusive = sample_scene_factors(n, rng=np.random.default_rng(factor_ss))
    text = sc.sample_text_exclusive(n * CAPS_PER_IMAGE, rng=np.random.default_rng(text_ss))
    captions = sc.render_captions(np.repeat(shared, CAPS_PER_IMAGE, axis=0), text)
    render_rng = np.random.default_rng(render_ss)
    feats = np.empty((n, 36, feature_dim), np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        images = render_scenes(shared[start:stop], exclusive[start:stop], rng=render_rng)
        feats[start:stop] = region_features(images, feature_dim=feature_dim)
    return {"ims": feats, "caps": captions, "shared": shared, "exclusive": exclusive, "text": text}


def _params(size: str, seed: int, feature_dim: int) -> dict[str, Any]:
    if size not in SIZES:
        raise ValueError(f"unknown scenes size {size!r}; expected one of {sorted(SIZES)}")
    return {
        "generator_version": GENERATOR_VERSION,
        "size": size,
        "images": SIZES[size],
        "seed": int(seed),
        "feature_dim": int(feature_dim),
        "net_seed": NET_SEED,
    }


def write_scenes(root: str | os.PathLike, *, size: str = "default", seed: int = 0,
                 feature_dim: int = 128) -> str:  # fmt: skip
    """Generates the benchmark into ``root`` (created; existing files overwritten).

    ``{split}_factors.npz`` holds ``shared`` int32 ``[N_img, 5]`` (``shared_names``,
    ``shared_cardinalities``), ``image_exclusive`` float32 ``[N_img, 18]``
    (``image_exclusive_names``; continuous), ``text_exclusive`` int32 ``[N_caps, 7]``
    (``text_exclusive_names``, ``text_exclusive_cardinalities``; categorical).
    Caption ``k`` belongs to image ``k // 5``.

    Returns:
        ``root`` as a string.
    """
    params = _params(size, seed, feature_dim)
    root = os.fspath(root)
    folder = os.path.join(root, "scenes_precomp")
    os.makedirs(folder, exist_ok=True)
    split_seqs = np.random.SeedSequence(int(seed)).spawn(len(SPLITS))
    for split, ss in zip(SPLITS, split_seqs, strict=True):
        data = _generate_split(SIZES[size][split], seed_seq=ss, feature_dim=feature_dim)
        np.save(os.path.join(folder, f"{split}_ims.npy"), data["ims"])
        with open(os.path.join(folder, f"{split}_caps.txt"), "w") as f:
            f.write("\n".join(data["caps"]) + "\n")
        np.savez(
            os.path.join(folder, f"{split}_factors.npz"),
            shared=data["shared"],
            shared_names=np.array(SHARED_NAMES),
            shared_cardinalities=np.array(SHARED_CARDINALITIES, np.int32),
            image_exclusive=data["exclusive"],
            image_exclusive_names=np.array(IMAGE_EXCLUSIVE_NAMES),
            text_exclusive=data["text"],
            text_exclusive_names=np.array(sc.TEXT_EXCLUSIVE_NAMES),
            text_exclusive_cardinalities=np.array(sc.TEXT_EXCLUSIVE_CARDINALITIES, np.int32),
        )
    sc.write_vocab(os.path.join(root, "vocab", "scenes_precomp_vocab.json"))
    with open(os.path.join(folder, MARKER), "w") as f:
        json.dump(params, f, indent=1, sort_keys=True)
    return root


def _marker_params(root: str) -> dict | None:
    try:
        with open(os.path.join(root, "scenes_precomp", MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_scenes(cache_dir: str | os.PathLike, *, size: str = "default", seed: int = 0,
                  feature_dim: int = 128) -> str:  # fmt: skip
    """Returns the root of the benchmark for these parameters, generating it if needed.

    The root is ``{cache_dir}/scenes-{size}-seed{seed}-f{feature_dim}``. It is reused when
    its ``GENERATOR.json`` matches the parameters (generator version included), otherwise
    regenerated into a temporary folder next to it and renamed into place, so a reader
    never sees a half-written benchmark and a crashed write leaves no root behind.
    """
    params = _params(size, seed, feature_dim)
    cache_dir = os.fspath(cache_dir)
    root = os.path.join(cache_dir, f"scenes-{size}-seed{seed}-f{feature_dim}")
    if _marker_params(root) == params:
        return root
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".scenes-tmp-", dir=cache_dir)
    try:
        write_scenes(tmp, size=size, seed=seed, feature_dim=feature_dim)
        if os.path.exists(root):  # stale parameters or a foreign folder: replace it
            stale = tempfile.mkdtemp(prefix=".scenes-stale-", dir=cache_dir)
            os.rename(root, os.path.join(stale, "old"))
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def load_scene_factors(root: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """The ground-truth arrays of ``{root}/scenes_precomp/{split}_factors.npz``."""
    path = os.path.join(os.fspath(root), "scenes_precomp", f"{split}_factors.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"scenes factors file not found: {path}")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
