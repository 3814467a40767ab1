"""Image and text encoders of the SCAN/NCR retrieval family (Flax NNX), for region features
and tokenised captions.

* :class:`RegionEncoder` is the family's ``EncoderImagePrecomp``: one Linear from the
  region-feature width F to the embedding width D, applied to every region, then L2 per
  region. The pooled code (for cosine similarity) is the mean over regions, L2-normalised.
* :class:`GRUTextEncoder` is the family's ``EncoderText``: a word embedding (width 300,
  initialised U(−0.1, 0.1)), a bidirectional GRU of hidden width D whose two directions are
  averaged per word, masked by length, and L2 per word. The pooled code is the mean over the
  valid words, L2-normalised (``pool="mean"``: the global text vector of SGRAF, on which
  NCR builds), or the GRU state at the sentence ends (``pool="last"``: VSE++'s choice; the
  forward direction's state after the last word averaged with the backward direction's
  state after the first).

* :class:`ProjectedTextEncoder` is the text side over a frozen pretrained tower (MiniLM):
  a trainable Linear from the tower's precomputed sentence embedding to D, then L2.

All take static shapes (``[B, R, F]`` regions; ``[B, L]`` int tokens and ``[B]`` lengths;
``[B, H]`` sentence embeddings) and are jittable. Padding beyond a caption's length never
changes its codes: the GRU stops updating past the length and padded word codes are zeroed.
The Bi-GRU runs fused (`jaxmr.models.gru`: both directions in one loop that stops at the
batch's longest caption, input projections hoisted, a hand-written gradient) on the
parameters of two `nnx.RNN(GRUCell)`s, which `GRUTextEncoder.fused = False` runs instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmr.models.gru import bigru_projected, gru_cell_weights, project_tokens

POOLS = ("mean", "last")


def l2_normalise(x: jax.Array, *, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """``x / max(‖x‖₂, eps)`` along ``axis`` (zero vectors stay zero, gradients finite)."""
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _uniform_init(scale: float):
    """U(−scale, scale), EncoderText.init_weights' word-embedding init."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def xavier_linear(in_dim: int, out_dim: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """Linear layer with a Xavier-uniform weight and a zero bias (SCAN/NCR's
    `EncoderImagePrecomp.init_weights`), for every projection onto the joint space."""
    return nnx.Linear(
        in_dim,
        out_dim,
        kernel_init=nnx.initializers.xavier_uniform(),
        bias_init=nnx.initializers.zeros_init(),
        rngs=rngs,
    )


class RegionEncoder(nnx.Module):
    """Linear F → D per region, then L2 per region; pooled code = L2(mean over regions).

    Args:
      feature_dim: F, width of the precomputed region features (2048 in the field).
      embed_dim: D, width of the joint embedding (1024 in the field).
      normalise: L2-normalise each region code (the family's default, ``no_imgnorm=False``).
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, feature_dim: int, embed_dim: int, *, normalise: bool = True,
                 rngs: nnx.Rngs):  # fmt: skip
        # Xavier-uniform weight and zero bias, as EncoderImagePrecomp.init_weights.
        self.fc = xavier_linear(feature_dim, embed_dim, rngs=rngs)
        self.normalise = normalise

    def encode_regions(self, regions: jax.Array) -> jax.Array:
        """``[B, R, F]`` → ``[B, R, D]`` region codes."""
        codes = self.fc(regions)
        return l2_normalise(codes) if self.normalise else codes

    def __call__(self, regions: jax.Array) -> jax.Array:
        """``[B, R, F]`` → ``[B, D]`` unit-norm pooled code."""
        return l2_normalise(jnp.mean(self.encode_regions(regions), axis=1))


class GRUTextEncoder(nnx.Module):
    """Embedding → bidirectional GRU (directions averaged) → L2 per word; pooled code.

    Args:
      vocab_size: number of token ids (id 0 is padding by convention; its value is unused
        because padded steps are masked).
      embed_dim: D, GRU hidden width and output width.
      word_dim: word-embedding width (300 in the family).
      pool: ``"mean"`` over valid words or ``"last"`` GRU states (see the module docstring).
      normalise: L2-normalise each word code (the family's default, ``no_txtnorm=False``).
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, vocab_size: int, embed_dim: int, *, word_dim: int = 300,
                 pool: str = "mean", normalise: bool = True, rngs: nnx.Rngs):  # fmt: skip
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.embed = nnx.Embed(
            vocab_size,
            word_dim,
            embedding_init=_uniform_init(0.1),
            rngs=rngs,
        )
        self.forward_rnn = nnx.RNN(
            nnx.GRUCell(word_dim, embed_dim, rngs=rngs), return_carry=True, rngs=False
        )
        self.backward_rnn = nnx.RNN(
            nnx.GRUCell(word_dim, embed_dim, rngs=rngs),
            return_carry=True,
            reverse=True,
            keep_order=True,
            rngs=False,
        )
        # rngs=False: the carry starts at zero (passed explicitly) and nothing is stochastic,
        # so the RNNs keep no RNG state (it would otherwise sit in the state and checkpoints).
        self.embed_dim = embed_dim
        self.pool = pool
        self.normalise = normalise

    # The fused Bi-GRU (`jaxmr.models.gru`); False: the two `nnx.RNN`s step by step, the
    # reference it is tested against (tests/models/test_gru.py) and timed against
    # (bench/disncl_step.py --jax-variants flax-gru).
    fused = True

    def _directions(self, tokens: jax.Array, lengths: jax.Array):
        lengths = lengths.astype(jnp.int32)
        mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]  # [B, L]
        if not self.fused:
            return (*self._directions_reference(tokens, lengths), mask)
        # The two `nnx.RNN`s hold the parameters (their layout is the checkpoints'); the
        # fused recurrence computes what they compute, faster. Time-major from the tokens on.
        fw, bw = gru_cell_weights(self.forward_rnn.cell), gru_cell_weights(self.backward_rnn.cell)
        xs = project_tokens(tokens.T, self.embed.embedding[...], fw, bw)  # 6 x [L, B, D]
        fwd, bwd, fwd_last, bwd_last = bigru_projected(xs, lengths, fw["w_h"], bw["w_h"])
        return jnp.swapaxes(fwd, 0, 1), jnp.swapaxes(bwd, 0, 1), fwd_last, bwd_last, mask

    def _directions_reference(self, tokens: jax.Array, lengths: jax.Array):
        x = self.embed(tokens)
        h0 = jnp.zeros((tokens.shape[0], self.embed_dim), x.dtype)
        fwd_last, fwd = self.forward_rnn(x, initial_carry=h0, seq_lengths=lengths)
        bwd_last, bwd = self.backward_rnn(x, initial_carry=h0, seq_lengths=lengths)
        return fwd, bwd, fwd_last, bwd_last

    def encode_words(self, tokens: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[B, L]`` tokens, ``[B]`` lengths → (``[B, L, D]`` word codes, zero past the
        length; ``[B, L]`` bool mask of valid words)."""
        fwd, bwd, _, _, mask = self._directions(tokens, lengths)
        codes = (fwd + bwd) / 2
        if self.normalise:
            codes = l2_normalise(codes)
        return jnp.where(mask[..., None], codes, 0.0), mask

    def __call__(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
        """``[B, L]`` tokens, ``[B]`` lengths (≥ 1) → ``[B, D]`` unit-norm pooled code."""
        if self.pool == "last":
            _, _, fwd_last, bwd_last, _ = self._directions(tokens, lengths)
            return l2_normalise((fwd_last + bwd_last) / 2)
        codes, mask = self.encode_words(tokens, lengths)
        count = jnp.maximum(jnp.sum(mask, axis=1, keepdims=True), 1)
        return l2_normalise(jnp.sum(codes, axis=1) / count)


class ProjectedTextEncoder(nnx.Module):
    """A trainable Linear H → D over precomputed sentence embeddings, then L2: the text side
    when the text tower is frozen (e.g. MiniLM, whose mean-pooled outputs are computed once
    per caption), so only this projection trains, as `RegionEncoder`'s Linear does for
    precomputed region features.

    Args:
      feature_dim: H, width of the sentence embeddings (384 for all-MiniLM-L6-v2).
      embed_dim: D.
      rngs: ``nnx.Rngs``.
    """

    def __init__(self, feature_dim: int, embed_dim: int, *, rngs: nnx.Rngs):
        self.fc = xavier_linear(feature_dim, embed_dim, rngs=rngs)

    def __call__(self, features: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        """``[B, H]`` sentence embeddings (``lengths`` is ignored: the retrieval nets pass
        every text encoder (inputs, lengths)) → ``[B, D]`` unit-norm code."""
        if features.ndim != 2:
            raise ValueError(
                f"ProjectedTextEncoder expects [B, H] sentence embeddings, got shape "
                f"{features.shape}; with text_encoder='minilm' the split's text inputs must "
                "be the frozen tower's features (jaxmr.tasks.retrieval.text_features)"
            )
        return l2_normalise(self.fc(features.astype(jnp.float32)))
