"""An image encoder and a text encoder side by side (the SCAN/NCR family's dual encoder)."""

from __future__ import annotations

import jax
from flax import nnx

from jaxmr.models.retrieval import GRUTextEncoder, RegionEncoder


class DualEncoder(nnx.Module):
    """`RegionEncoder` for [B, R, F] region features and `GRUTextEncoder` for [B, L] tokens;
    both return unit-norm [B, D] codes, so `img @ txt.T` is the cosine similarity.

    Args:
      feature_dim: region-feature width F; vocab_size: number of token ids; embed_dim: D;
      word_dim: word-embedding width; pool: text pooling ("mean" or "last").
    """

    def __init__(
        self,
        feature_dim: int,
        vocab_size: int,
        embed_dim: int,
        *,
        word_dim: int = 300,
        pool: str = "mean",
        rngs: nnx.Rngs,
    ):
        self.image = RegionEncoder(feature_dim, embed_dim, rngs=rngs)
        self.text = GRUTextEncoder(vocab_size, embed_dim, word_dim=word_dim, pool=pool, rngs=rngs)

    def encode_images(self, regions: jax.Array) -> jax.Array:
        return self.image(regions)

    def encode_texts(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
        return self.text(tokens, lengths)
