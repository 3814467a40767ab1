"""Noisy correspondence: the two published ways of mismatching image-caption pairs.

**Caption level (NCR, Huang et al. NeurIPS 2021).** Choose ``int(ratio * n_caps)`` captions
at random and shuffle their image indices among themselves; the result is a "t2i" array of
length ``n_caps`` (caption ``k`` is paired with image ``t2i[k]``). NCR saves it as
``{output_dir}/{name}_precomp_{ratio}.npy``. A shuffled caption can draw back its own image
(or another image it shared with a chosen caption of the same image), so the realised
mismatch is slightly below the ratio: the expected number of such chance re-matches is
``1 + (captions_per_image - 1) * ratio`` over the whole split (about 2.6 captions of F30K's
145,000 at 40%), i.e. a fraction ``~(1 + 4 ratio) / n_caps`` below ``ratio``.

**Image level (DECL, Qin et al. ACM MM 2022; RCL, Hu et al. TPAMI 2023).** Choose
``int(ratio * n_img)`` images and permute them among themselves; the result is an array of
length ``n_img`` (image slot ``i`` shows the features of image ``perm[i]``), so all captions of
an image move together. RCL ships these files as ``noise_inx_{ratio}.npy``. A random
permutation of the chosen images leaves about one of them in place, so the realised fraction
of moved images is ``ratio - ~1 / n_img``.

Both are applied here as ``noisy_cap2img`` next to the clean ``cap2img``; the per-pair truth
``is_noisy = noisy_cap2img != cap2img`` is kept for evaluating clean/noisy splits. Index files
are plain ``.npy`` arrays in the field's formats; a loaded file's convention is detected from
its length (``n_caps``: caption level, ``n_img``: image level; with one caption per image
the two coincide).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "NoisyPairing",
    "apply_noise_index",
    "caption_level_noise",
    "image_level_noise",
    "make_or_load_noise",
]

log = logging.getLogger(__name__)

CONVENTIONS = ("caption", "image")


@dataclass(frozen=True)
class NoisyPairing:
    """A noisy pairing of captions to images with its ground truth.

    Attributes:
        noisy_cap2img: ``[N_caps]`` image index each caption is trained with.
        cap2img: ``[N_caps]`` the clean pairing.
        is_noisy: ``[N_caps]`` bool, ``noisy_cap2img != cap2img``.
        convention: ``"caption"`` (NCR t2i array) or ``"image"`` (DECL/RCL permutation).
        index: the raw index array as saved (length ``N_caps`` or ``N_img``).
        ratio: the requested ratio (``nan`` for a loaded file of unknown ratio).
    """

    noisy_cap2img: np.ndarray
    cap2img: np.ndarray
    is_noisy: np.ndarray
    convention: str
    index: np.ndarray
    ratio: float

    @property
    def realised_ratio(self) -> float:
        """Fraction of captions whose image is not their own."""
        return float(self.is_noisy.mean()) if self.is_noisy.size else 0.0

    @property
    def is_clean(self) -> np.ndarray:
        return ~self.is_noisy


def _check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"noise ratio must be in [0, 1), got {ratio}")
    return ratio


def caption_level_noise(cap2img, ratio: float, *, seed: int | np.random.Generator) -> np.ndarray:
    """NCR's caption-level noise: the image indices of ``int(ratio * n_caps)`` random captions
    shuffled among themselves.

    Args:
        cap2img: ``[N_caps]`` clean image index per caption.
        ratio: fraction of captions chosen.
        seed: seed or ``np.random.Generator``.

    Returns:
        ``[N_caps]`` int64 noisy image index per caption (NCR's saved t2i array).
    """
    ratio = _check_ratio(ratio)
    rng = np.random.default_rng(seed)
    t2i = np.array(cap2img, dtype=np.int64, copy=True)
    chosen = rng.permutation(len(t2i))[: int(ratio * len(t2i))]
    shuffled = t2i[chosen]
    rng.shuffle(shuffled)
    t2i[chosen] = shuffled
    return t2i


def image_level_noise(n_img: int, ratio: float, *, seed: int | np.random.Generator) -> np.ndarray:
    """DECL/RCL's image-level noise: ``int(ratio * n_img)`` random images permuted among
    themselves.

    Args:
        n_img: number of images.
        ratio: fraction of images chosen.
        seed: seed or ``np.random.Generator``.

    Returns:
        ``[N_img]`` int64 permutation: image slot ``i`` shows image ``perm[i]``.
    """
    ratio = _check_ratio(ratio)
    rng = np.random.default_rng(seed)
    perm = np.arange(n_img, dtype=np.int64)
    chosen = rng.permutation(n_img)[: int(ratio * n_img)]
    shuffled = chosen.copy()
    rng.shuffle(shuffled)
    perm[chosen] = shuffled
    return perm


def apply_noise_index(
    index, cap2img, n_img: int, *, ratio: float = float("nan"), source: str = "index"
) -> NoisyPairing:
    """Applies a caption-level t2i array or an image-level permutation, detected by length.

    Args:
        index: ``[N_caps]`` t2i array or ``[N_img]`` image permutation.
        cap2img: ``[N_caps]`` clean pairing.
        n_img: number of images.
        ratio: the requested ratio, if known (recorded only).
        source: name used in messages (e.g. the file path).

    Returns:
        :class:`NoisyPairing`.

    Raises:
        ValueError: the length fits neither convention, or indices are out of range.
    """
    index = np.asarray(index)
    cap2img = np.asarray(cap2img, dtype=np.int64)
    n_caps = len(cap2img)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"{source}: expected a 1-D integer array, got {index.dtype} {index.shape}")
    if len(index) == n_caps:
        convention = "caption"
        noisy = index.astype(np.int64)
    elif len(index) == n_img:
        convention = "image"
        noisy = index.astype(np.int64)[cap2img]
    else:
        raise ValueError(
            f"{source}: length {len(index)} fits neither a caption-level t2i array "
            f"(n_caps={n_caps}) nor an image-level permutation (n_img={n_img})"
        )
    if index.size and (index.min() < 0 or index.max() >= n_img):
        raise ValueError(f"{source}: image indices must lie in [0, {n_img})")
    return NoisyPairing(
        noisy_cap2img=noisy,
        cap2img=cap2img,
        is_noisy=noisy != cap2img,
        convention=convention,
        index=index,
        ratio=float(ratio),
    )


def make_or_load_noise(
    path: str | os.PathLike,
    cap2img,
    n_img: int,
    *,
    ratio: float,
    convention: str,
    seed: int,
) -> NoisyPairing:
    """Loads the noise index at ``path`` if it exists, else draws one, saves it and returns it.

    Runs that share ``path`` train on the same pairing. A loaded file may be any field-style
    index (NCR t2i or DECL/RCL permutation); its convention is detected from its length and
    logged, and a mismatch with ``convention`` is logged as a warning (the file wins, as in
    the published code).

    Args:
        path: ``.npy`` index file (written atomically).
        cap2img: ``[N_caps]`` clean pairing.
        n_img: number of images.
        ratio: fraction of captions (``"caption"``) or images (``"image"``) mismatched.
        convention: ``"caption"`` (NCR) or ``"image"`` (DECL/RCL).
        seed: seed of the draw.

    Returns:
        :class:`NoisyPairing` (``convention`` says which one was used).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    path = os.fspath(path)
    cap2img = np.asarray(cap2img, dtype=np.int64)
    if os.path.exists(path):
        try:
            index = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path}: not a readable .npy noise index ({e})") from e
        pairing = apply_noise_index(index, cap2img, n_img, ratio=ratio, source=path)
        log.info(
            "loaded %s-level noise index %s: %.4f of captions mismatched (ratio %g)",
            pairing.convention,
            path,
            pairing.realised_ratio,
            ratio,
        )
        if pairing.convention != convention and len(cap2img) != n_img:
            log.warning(
                "%s is %s-level, config asks for %s-level", path, pairing.convention, convention
            )
        return pairing
    if convention == "caption":
        index = caption_level_noise(cap2img, ratio, seed=seed)
    else:
        index = image_level_noise(n_img, ratio, seed=seed)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npy"  # one per writer: runs share the cache
    np.save(tmp, index)
    os.replace(tmp, path)
    pairing = apply_noise_index(index, cap2img, n_img, ratio=ratio, source=path)
    if convention == "image" and len(cap2img) == n_img:
        pairing = replace(pairing, convention="image")
    log.info(
        "saved %s-level noise index %s (ratio %g, seed %d): %.4f of captions mismatched",
        convention,
        path,
        ratio,
        seed,
        pairing.realised_ratio,
    )
    return pairing
