"""Retrieval encoders: shapes, unit norms, length masking, a hand-unrolled Bi-GRU, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmr.models.retrieval import GRUTextEncoder, RegionEncoder, l2_normalise

TOKENS = jnp.array([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 13], [4, 0, 0, 0, 0, 0]])
LENGTHS = jnp.array([3, 6, 1])


def _text(pool="mean", seed=0):
    return GRUTextEncoder(20, 8, word_dim=6, pool=pool, rngs=nnx.Rngs(seed))


# Jitted once per (structure, shape): eager calls re-trace the GRU scan every time, which
# made this file take a minute. Eager-vs-jit agreement has its own test below.
pooled = nnx.jit(lambda model, tokens, lengths: model(tokens, lengths))
words_of = nnx.jit(lambda model, tokens, lengths: model.encode_words(tokens, lengths))


def test_region_encoder_matches_manual_formula():
    enc = RegionEncoder(5, 4, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 36, 5)), jnp.float32)
    codes = x @ enc.fc.kernel[...] + enc.fc.bias[...]
    codes = codes / jnp.linalg.norm(codes, axis=-1, keepdims=True)
    pooled = codes.mean(axis=1)
    pooled = pooled / jnp.linalg.norm(pooled, axis=-1, keepdims=True)
    np.testing.assert_allclose(enc.encode_regions(x), codes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(enc(x), pooled, rtol=1e-5, atol=1e-6)
    assert enc(x).shape == (3, 4)
    np.testing.assert_allclose(jnp.linalg.norm(enc(x), axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(enc.fc.bias[...], 0.0)  # the family's zero-bias init


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_text_encoder_shapes_and_unit_norms(pool):
    enc = _text(pool)
    out = pooled(enc, TOKENS, LENGTHS)
    assert out.shape == (3, 8)
    np.testing.assert_allclose(jnp.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
    words, mask = words_of(enc, TOKENS, LENGTHS)
    assert words.shape == (3, 6, 8)
    np.testing.assert_array_equal(mask, np.arange(6)[None] < np.array([3, 6, 1])[:, None])
    norms = jnp.linalg.norm(words, axis=-1)
    np.testing.assert_allclose(norms[mask], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(norms[~mask], 0.0)


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_padding_never_changes_the_codes(pool):
    enc = _text(pool)
    # Different pad ids and extra padded steps beyond each length.
    longer = jnp.concatenate([TOKENS, jnp.full((3, 4), 17)], axis=1)
    longer = jnp.where(jnp.arange(10)[None] < LENGTHS[:, None], longer, 19)
    np.testing.assert_allclose(
        pooled(enc, TOKENS, LENGTHS), pooled(enc, longer, LENGTHS), atol=1e-6
    )
    w_short, _ = words_of(enc, TOKENS, LENGTHS)
    w_long, _ = words_of(enc, longer, LENGTHS)
    np.testing.assert_allclose(w_short, w_long[:, :6], atol=1e-6)
    np.testing.assert_array_equal(w_long[:, 6:], 0.0)
    # And one caption alone gives the same code as inside the batch.
    alone = pooled(enc, TOKENS[:1, :3], LENGTHS[:1])
    np.testing.assert_allclose(alone[0], pooled(enc, TOKENS, LENGTHS)[0], atol=1e-6)


def test_bidirectional_gru_equals_a_hand_unrolled_loop():
    enc = _text("mean")
    tokens, n = TOKENS[1], 6
    x = enc.embed(tokens)
    h = jnp.zeros(8)
    fwd = []
    for t in range(n):
        h, y = enc.forward_rnn.cell(h, x[t])
        fwd.append(y)
    h = jnp.zeros(8)
    bwd = [None] * n
    for t in reversed(range(n)):
        h, y = enc.backward_rnn.cell(h, x[t])
        bwd[t] = y
    codes = l2_normalise((jnp.stack(fwd) + jnp.stack(bwd)) / 2)
    words, _ = words_of(enc, TOKENS[1:2], LENGTHS[1:2])
    np.testing.assert_allclose(words[0], codes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        pooled(enc, TOKENS[1:2], LENGTHS[1:2])[0],
        l2_normalise(codes.mean(axis=0)),
        rtol=1e-5,
        atol=1e-6,
    )
    last = _text("last")
    np.testing.assert_allclose(
        pooled(last, TOKENS[1:2], LENGTHS[1:2])[0], l2_normalise((fwd[-1] + bwd[0]) / 2), atol=1e-6
    )


def test_one_word_caption_pools_equal():
    mean, last = _text("mean"), _text("last")
    np.testing.assert_allclose(
        pooled(mean, TOKENS, LENGTHS)[2], pooled(last, TOKENS, LENGTHS)[2], atol=1e-6
    )


def test_jit_matches_eager_and_init_is_deterministic():
    enc = _text("mean")

    @nnx.jit
    def run(model, tokens, lengths):
        return model(tokens, lengths)

    np.testing.assert_allclose(run(enc, TOKENS, LENGTHS), enc(TOKENS, LENGTHS), atol=1e-6)
    same = [pooled(_text(seed=s), TOKENS, LENGTHS) for s in (3, 3, 4)]
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.allclose(same[0], same[2])
    emb = enc.embed.embedding[...]
    assert float(emb.min()) >= -0.1 and float(emb.max()) <= 0.1


def test_gradients_are_finite_and_ignore_padding():
    enc = _text("mean")
    graphdef, params = nnx.split(enc)

    def loss(p, tokens):
        return jnp.sum(nnx.merge(graphdef, p)(tokens, LENGTHS) ** 3)

    padded = TOKENS.at[0, 4].set(15)  # a token past caption 0's length
    g = jax.jit(jax.grad(loss))(params, padded)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))
    emb_grad = g["embed"]["embedding"][...]
    np.testing.assert_array_equal(emb_grad[15], 0.0)


def test_unknown_pool_is_an_error():
    with pytest.raises(ValueError, match="pool must be one of"):
        _text("max")


def test_projected_text_encoder_is_a_linear_then_l2():
    from jaxmr.models.dual_encoder import DualEncoder
    from jaxmr.models.retrieval import ProjectedTextEncoder

    enc = ProjectedTextEncoder(6, 4, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    manual = x @ np.asarray(enc.fc.kernel.value) + np.asarray(enc.fc.bias.value)
    manual /= np.linalg.norm(manual, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(enc(jnp.asarray(x), None)), manual, rtol=1e-5)
    with pytest.raises(ValueError, match="sentence embeddings"):
        enc(jnp.zeros((3, 5, 6)))
    dual = DualEncoder(8, 6, 4, text_encoder="minilm", rngs=nnx.Rngs(0))
    assert isinstance(dual.text, ProjectedTextEncoder)
    assert dual.encode_texts(jnp.asarray(x), jnp.ones(3, jnp.int32)).shape == (3, 4)
    with pytest.raises(ValueError, match="text_encoder must be one of"):
        DualEncoder(8, 6, 4, text_encoder="bert", rngs=nnx.Rngs(0))
