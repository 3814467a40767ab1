"""Networks of a retrieval task as parameter groups: build, bind, embed whole splits."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from jaxmr.models.disncl import DisNCLNet
from jaxmr.models.dual_encoder import DualEncoder
from jaxmr.models.pure import PureModule
from jaxmr.train.evaluators import predict_arrays


class Nets:
    """One `DualEncoder` (or `DisNCLNet`) per parameter group (`net_a`, and `net_b` when
    co-teaching); `encode_images`/`encode_texts` give the codes similarity is computed on.
    `vocab_size` is the text input width: the vocab for the Bi-GRU, the sentence-embedding
    width H with `model_cfg.text_encoder = "minilm"` (a split's `tokens` then hold [N, H]
    frozen-tower embeddings, `jaxmr.tasks.retrieval.text_features`).

    `bind(params, net)` gives a module holding that group's parameters (inside jit);
    `embed(params, split)` returns host arrays of every image and caption code of a split.
    """

    def __init__(
        self,
        model_cfg,
        feature_dim: int,
        vocab_size: int,
        names: Sequence[str],
        *,
        disentangled: bool = False,
    ):
        self.names = tuple(names)
        common = dict(word_dim=int(model_cfg.word_dim), pool=model_cfg.text_pool)
        text_encoder = model_cfg.get("text_encoder", "gru")
        if disentangled and text_encoder != "gru":
            raise ValueError(
                f"config.model.text_encoder={text_encoder!r} is wired for vsepp, infonce and "
                "ncr; DisNCL's network builds its own Bi-GRU text encoder (use 'gru')"
            )
        if disentangled:
            self._make = lambda rngs: DisNCLNet(
                feature_dim,
                vocab_size,
                int(model_cfg.embed_dim),
                mii_dim=int(model_cfg.mii_dim),
                mei_dim=int(model_cfg.mei_dim),
                similarity=model_cfg.similarity,
                decorrelation=model_cfg.get("mii_decorrelation", "none"),
                mei_decorrelation=model_cfg.get("mei_decorrelation", "none"),
                decor_scale=float(model_cfg.get("decor_scale", 10.0)),
                exclusive_k=model_cfg.get("exclusive_k", 0),
                exclusive_ridge=model_cfg.get("exclusive_ridge", 1e-3),
                rngs=rngs,
                **common,
            )
        else:
            self._make = lambda rngs: DualEncoder(
                feature_dim,
                vocab_size,
                int(model_cfg.embed_dim),
                text_encoder=text_encoder,
                rngs=rngs,
                **common,
            )
        self.module = PureModule(self._make)
        self._embed_images = jax.jit(self._images_fn)
        self._embed_texts = jax.jit(self._texts_fn)

    def init(self, key) -> dict:
        keys = jax.random.split(key, len(self.names))
        return {n: self.module.init(k) for n, k in zip(self.names, keys, strict=True)}

    def bind(self, params, net: str) -> DualEncoder | DisNCLNet:
        return self.module.bind(params[net])

    def _images_fn(self, params, batch):
        return {n: self.bind(params, n).encode_images(batch["images"]) for n in self.names}

    def _texts_fn(self, params, batch):
        return {
            n: self.bind(params, n).encode_texts(batch["tokens"], batch["lengths"])
            for n in self.names
        }

    def embed(self, params, split, *, batch_size: int = 512) -> tuple[dict, dict]:
        """({net: [N_img, D]}, {net: [N_caps, D]}) codes of a `PrecompSplit`, on the host."""
        imgs = predict_arrays(
            self._embed_images, params, {"images": split.images}, batch_size=batch_size
        )
        txts = predict_arrays(
            self._embed_texts,
            params,
            {"tokens": split.tokens, "lengths": split.lengths},
            batch_size=batch_size,
        )
        return imgs, txts


def mean_similarity(imgs: dict, txts: dict) -> np.ndarray:
    """[N_img, N_caps] cosine similarity averaged over the networks (NCR's co-teaching eval)."""
    sims = [np.asarray(imgs[n]) @ np.asarray(txts[n]).T for n in imgs]
    return np.mean(sims, axis=0)
