"""DisNCL's network: a dual encoder whose codes are split into a modality-invariant (MII) and a
modality-exclusive (MEI) part per modality, plus the critics of its own MI terms.

For modality m with backbone code h_m (the pooled, unit-norm output of `RegionEncoder` or
`GRUTextEncoder`):
  s_m = L2(W^s_m h_m)    MII code, used for cross-modal similarity (`s_v @ s_t.T`)
  x_m = L2(W^x_m h_m + b)  MEI code (unit norm like s_m: a bounded scale keeps CLUB's
                         Gaussian q(x|s) fittable; unnormalised codes grew until its NLL
                         reached ~70 nats per modality)
  critic_m(x, h) = (U_m x) . h    separable critic for the InfoNCE bound on I(x_m; h_m)
The heads are linear so that what the codes carry is decided by the objective, not by extra
capacity (docs/disncl.md).
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxmr.models.retrieval import GRUTextEncoder, RegionEncoder, l2_normalise


class _Heads(nnx.Module):
    def __init__(self, dim: int, mii_dim: int, mei_dim: int, *, rngs: nnx.Rngs):
        self.mii = nnx.Linear(dim, mii_dim, rngs=rngs)
        self.mei = nnx.Linear(dim, mei_dim, rngs=rngs)
        self.critic = nnx.Linear(mei_dim, dim, use_bias=False, rngs=rngs)

    def __call__(self, h: jax.Array) -> dict[str, jax.Array]:
        return {"h": h, "s": l2_normalise(self.mii(h)), "x": l2_normalise(self.mei(h))}


class DisNCLNet(nnx.Module):
    """Backbone encoders + MII/MEI heads per modality.

    `encode_images` / `encode_texts` return the codes used for similarity: the MII code, or
    the whole backbone code when `similarity="full"` (an ablation). `image_codes` /
    `text_codes` return {h, s, x} for the losses.
    """

    def __init__(
        self,
        feature_dim: int,
        vocab_size: int,
        embed_dim: int,
        *,
        mii_dim: int,
        mei_dim: int,
        word_dim: int = 300,
        pool: str = "mean",
        similarity: str = "mii",
        rngs: nnx.Rngs,
    ):
        if similarity not in ("mii", "full"):
            raise ValueError(f"similarity must be 'mii' or 'full', got {similarity!r}")
        self.image = RegionEncoder(feature_dim, embed_dim, rngs=rngs)
        self.text = GRUTextEncoder(vocab_size, embed_dim, word_dim=word_dim, pool=pool, rngs=rngs)
        self.image_heads = _Heads(embed_dim, mii_dim, mei_dim, rngs=rngs)
        self.text_heads = _Heads(embed_dim, mii_dim, mei_dim, rngs=rngs)
        self.similarity = similarity

    def image_codes(self, regions: jax.Array) -> dict[str, jax.Array]:
        return self.image_heads(self.image(regions))

    def text_codes(self, tokens: jax.Array, lengths: jax.Array) -> dict[str, jax.Array]:
        return self.text_heads(self.text(tokens, lengths))

    def critic_scores(self, x: jax.Array, h: jax.Array, modality: str) -> jax.Array:
        """[N, N] critic scores (U x_i) . h_j of the InfoNCE bound on I(x_m; h_m)."""
        heads = self.image_heads if modality == "image" else self.text_heads
        return heads.critic(x) @ h.T

    def encode_images(self, regions: jax.Array) -> jax.Array:
        c = self.image_codes(regions)
        return c["s"] if self.similarity == "mii" else c["h"]

    def encode_texts(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
        c = self.text_codes(tokens, lengths)
        return c["s"] if self.similarity == "mii" else c["h"]


__all__ = ["DisNCLNet"]
