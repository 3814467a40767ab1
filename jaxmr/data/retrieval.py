"""Everything a retrieval run reads: the three splits in the SCAN/NCR layout (the offline
scenes benchmark or a user's copy), the vocabulary, the training split's noisy pairing and,
for the scenes benchmark, the ground-truth factors.

`config.data` keys (declared in `configs/retrieval_common.py`):
  source: "scenes" (generated offline benchmark) or "precomp" (a local copy of
    `{root}/{name}_precomp/`, e.g. f30k, coco, cc152k).
  root, name, vocab_path, train_split, dev_split, test_split, max_len, dev_images.
  scenes.size / scenes.seed / scenes.feature_dim, cache_dir (where scenes and noise indices go).
  noise.ratio / noise.convention ("caption": NCR; "image": DECL/RCL) / noise.seed /
    noise.file (a field-style index file to reuse; empty: `{cache_dir}/noise/<name>_<...>.npy`).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from jaxmr.data.noise import NoisyPairing, make_or_load_noise
from jaxmr.data.precomp import PrecompSplit, default_vocab_path, load_precomp
from jaxmr.data.vocab import load_vocab


@dataclasses.dataclass
class RetrievalData:
    """Train/dev/test splits, the training pairing and (scenes only) ground truth.

    Attributes:
      train, dev, test: `PrecompSplit`s (images memory-mapped).
      pairing: the training split's noisy pairing (`pairing.noisy_cap2img` is what training
        sees; `pairing.is_noisy` the truth, for split-quality metrics only).
      factors: {split: factor arrays} for the scenes benchmark, else {}.
      root: the dataset root; noise_file: the index file used.
    """

    train: PrecompSplit
    dev: PrecompSplit
    test: PrecompSplit
    pairing: NoisyPairing
    factors: dict[str, dict[str, np.ndarray]]
    root: str
    noise_file: str
    vocab_size: int


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "jaxmr")


def _noise_file(data_cfg, name: str, cache_dir: str) -> str:
    if data_cfg.noise.file:
        return os.path.expanduser(data_cfg.noise.file)
    n = data_cfg.noise
    tag = f"{name}_{data_cfg.train_split}_{n.convention}_{n.ratio:g}_seed{n.seed}"
    if data_cfg.source == "scenes":
        s = data_cfg.scenes
        tag = f"{tag}_{s.size}_gen{s.seed}"
    return os.path.join(cache_dir, "noise", tag + ".npy")


def load_retrieval_data(data_cfg) -> RetrievalData:
    """Reads (or, for the scenes benchmark, generates once and caches) the data of a run."""
    cache_dir = os.path.expanduser(data_cfg.cache_dir or default_cache_dir())
    if data_cfg.source == "scenes":
        from jaxmr.data.scenes import ensure_scenes, load_scene_factors

        s = data_cfg.scenes
        root = ensure_scenes(cache_dir, size=s.size, seed=s.seed, feature_dim=s.feature_dim)
        print(f"scenes benchmark ({s.size}, seed {s.seed}) at {root}", file=sys.stderr)
        name = "scenes"
    elif data_cfg.source == "precomp":
        root = os.path.expanduser(data_cfg.root)
        name = data_cfg.name
        folder = os.path.join(root, f"{name.removesuffix('_precomp')}_precomp")
        if not data_cfg.root or not os.path.isdir(folder):
            raise FileNotFoundError(
                f"data folder not found: {folder} (set --config.data.root to the folder holding "
                f"{name}_precomp/ with {{train,dev,test}}_ims.npy and _caps.txt, and "
                f"vocab/{name}_precomp_vocab.json)"
            )
    else:
        raise ValueError(
            f"config.data.source must be 'scenes' or 'precomp', got {data_cfg.source!r}"
        )
    vocab_path = data_cfg.vocab_path or default_vocab_path(root, name)
    vocab = load_vocab(vocab_path)
    kw = dict(vocab=vocab, max_len=int(data_cfg.max_len) or None)
    train = load_precomp(root, name, data_cfg.train_split, dev_images=None, **kw)
    dev = load_precomp(root, name, data_cfg.dev_split, dev_images=int(data_cfg.dev_images), **kw)
    test = load_precomp(root, name, data_cfg.test_split, dev_images=None, **kw)
    noise_file = _noise_file(data_cfg, name, cache_dir)
    n = data_cfg.noise
    if n.ratio > 0 or data_cfg.noise.file:
        pairing = make_or_load_noise(
            noise_file,
            train.cap2img,
            len(train.images),
            ratio=float(n.ratio),
            convention=n.convention,
            seed=int(n.seed),
        )
        print(
            f"noise: {pairing.convention}-level, {pairing.realised_ratio:.4f} of training "
            f"captions mismatched, index {noise_file}",
            file=sys.stderr,
        )
    else:
        cap2img = np.asarray(train.cap2img, np.int64)
        pairing = NoisyPairing(
            noisy_cap2img=cap2img,
            cap2img=cap2img,
            is_noisy=np.zeros(len(cap2img), bool),
            convention=n.convention,
            index=cap2img,
            ratio=0.0,
        )
        noise_file = ""
    factors = {}
    if data_cfg.source == "scenes":
        factors = {sp: load_scene_factors(root, sp) for sp in ("train", "dev", "test")}
    return RetrievalData(train, dev, test, pairing, factors, root, noise_file, len(vocab.word2idx))
