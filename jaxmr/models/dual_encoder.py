"""An image encoder and a text encoder side by side (the SCAN/NCR family's dual encoder)."""

from __future__ import annotations

import jax
from flax import nnx

from jaxmr.models.retrieval import GRUTextEncoder, ProjectedTextEncoder, RegionEncoder

TEXT_ENCODERS = ("gru", "minilm")


class DualEncoder(nnx.Module):
    """`RegionEncoder` for [B, R, F] region features and, for the text, `GRUTextEncoder` over
    [B, L] tokens (`text_encoder="gru"`) or `ProjectedTextEncoder` over [B, H] frozen-tower
    sentence embeddings (`text_encoder="minilm"`); both sides return unit-norm [B, D] codes,
    so `img @ txt.T` is the cosine similarity.

    Args:
      feature_dim: region-feature width F; vocab_size: number of token ids ("gru"), or H,
      the width of the sentence embeddings ("minilm"); embed_dim: D; word_dim: word-embedding
      width; pool: text pooling ("mean" or "last"); text_encoder: "gru" or "minilm".
    """

    def __init__(
        self,
        feature_dim: int,
        vocab_size: int,
        embed_dim: int,
        *,
        word_dim: int = 300,
        pool: str = "mean",
        text_encoder: str = "gru",
        rngs: nnx.Rngs,
    ):
        if text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, got {text_encoder!r}")
        self.image = RegionEncoder(feature_dim, embed_dim, rngs=rngs)
        if text_encoder == "minilm":
            self.text = ProjectedTextEncoder(vocab_size, embed_dim, rngs=rngs)
        else:
            self.text = GRUTextEncoder(
                vocab_size, embed_dim, word_dim=word_dim, pool=pool, rngs=rngs
            )

    def encode_images(self, regions: jax.Array) -> jax.Array:
        return self.image(regions)

    def encode_texts(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
        return self.text(tokens, lengths)
