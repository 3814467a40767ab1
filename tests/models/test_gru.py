"""The fused Bi-GRU (`jaxmr.models.gru`) against the reference: two `nnx.RNN(GRUCell)`s stepped
cell by cell, masked by length; values and gradients of every parameter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmr.models import gru as gru_module
from jaxmr.models.gru import bidirectional_gru, gate_inputs, gru_cell_weights, project_tokens
from jaxmr.models.retrieval import GRUTextEncoder

# Lengths from 1 to the padded length, the longest below it (the loop then stops early) and a
# batch whose longest caption fills the padding.
LENGTHS = {"short": np.array([3, 1, 5, 2, 5, 4]), "full": np.array([3, 1, 7, 2, 5, 4])}


def _encoder(pool="mean", seed=0, vocab=30, dim=8, word_dim=6):
    return GRUTextEncoder(vocab, dim, word_dim=word_dim, pool=pool, rngs=nnx.Rngs(seed))


def _tokens(lengths, seq=7, vocab=30, seed=0):
    rng = np.random.default_rng(seed)
    tok = rng.integers(1, vocab, (len(lengths), seq))
    return jnp.asarray(np.where(np.arange(seq)[None] < lengths[:, None], tok, 0), jnp.int32)


def _both(fn):
    """fn(encoder) under the fused and the reference Bi-GRU."""
    out = {}
    for fused in (True, False):
        GRUTextEncoder.fused = fused
        try:
            out[fused] = fn()
        finally:
            GRUTextEncoder.fused = True
    return out[True], out[False]


def _reference_cells(enc, tokens, lengths):
    """The two directions stepped by hand with the `GRUCell`s: [B, L, D] states at valid
    positions (zero elsewhere), the forward state after the last word, the backward after the
    first."""
    x = enc.embed(tokens)
    b, seq = tokens.shape
    fwd = np.zeros((b, seq, enc.embed_dim), np.float32)
    bwd = np.zeros_like(fwd)
    last_f, last_b = [], []
    for i in range(b):
        n = int(lengths[i])
        h = jnp.zeros(enc.embed_dim)
        for t in range(n):
            h, _ = enc.forward_rnn.cell(h, x[i, t])
            fwd[i, t] = h
        last_f.append(h)
        h = jnp.zeros(enc.embed_dim)
        for t in reversed(range(n)):
            h, _ = enc.backward_rnn.cell(h, x[i, t])
            bwd[i, t] = h
        last_b.append(h)
    return fwd, bwd, np.stack(last_f), np.stack(last_b)


@pytest.mark.parametrize("case", sorted(LENGTHS))
def test_fused_states_equal_the_cell_by_cell_gru(case):
    lengths = LENGTHS[case]
    enc, tokens = _encoder(), _tokens(lengths)
    x = enc.embed(tokens)
    fwd, bwd, last_f, last_b = jax.jit(bidirectional_gru)(
        x,
        jnp.asarray(lengths),
        gru_cell_weights(enc.forward_rnn.cell),
        gru_cell_weights(enc.backward_rnn.cell),
    )
    ref_f, ref_b, ref_last_f, ref_last_b = _reference_cells(enc, tokens, lengths)
    mask = np.arange(tokens.shape[1])[None] < lengths[:, None]
    np.testing.assert_allclose(np.asarray(fwd)[mask], ref_f[mask], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bwd)[mask], ref_b[mask], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last_f, ref_last_f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last_b, ref_last_b, rtol=1e-5, atol=1e-6)
    # The backward direction is zero past each length (it has not started there).
    np.testing.assert_array_equal(np.asarray(bwd)[~mask], 0.0)


# vocab 30 < 6 x 7 tokens: the vocabulary is projected, then gathered; 60: tokens projected.
@pytest.mark.parametrize(
    "pool,case,vocab",
    [("mean", "short", 30), ("last", "full", 30), ("mean", "full", 60), ("last", "short", 60)],
)
@pytest.mark.parametrize("weight_grad", ["in_loop", "after_loop"])
def test_encoder_codes_and_gradients_equal_the_reference(
    pool, case, vocab, weight_grad, monkeypatch
):
    # The recurrent weights' gradient is summed in the backward loop up to a width, after it
    # above; the test's width (8) takes the first path unless the threshold is lowered.
    if weight_grad == "after_loop":
        monkeypatch.setattr(gru_module, "LOOP_WEIGHT_GRAD_MAX_DIM", 0)
    lengths = jnp.asarray(LENGTHS[case])
    enc = _encoder(pool, seed=1, vocab=vocab)
    tokens = _tokens(LENGTHS[case], seed=1, vocab=vocab)
    graphdef, params = nnx.split(enc)
    weights = jax.random.normal(jax.random.key(2), (len(LENGTHS[case]), 8))

    def loss(params):
        model = nnx.merge(graphdef, params)
        words, _ = model.encode_words(tokens, lengths)
        # Weighted, so every output position and unit carries its own cotangent.
        return jnp.sum(model(tokens, lengths) * weights) + jnp.sum(jnp.sin(3.0 * words))

    (val, grads), (val_ref, grads_ref) = _both(lambda: jax.jit(jax.value_and_grad(loss))(params))
    np.testing.assert_allclose(val, val_ref, rtol=1e-5)
    flat, flat_ref = nnx.to_flat_state(grads), nnx.to_flat_state(grads_ref)
    assert [k for k, _ in flat] == [k for k, _ in flat_ref]
    for (path, g), (_, g_ref) in zip(flat, flat_ref, strict=True):
        g, g_ref = np.asarray(g[...]), np.asarray(g_ref[...])
        scale = max(float(np.abs(g_ref).max()), 1e-6)
        np.testing.assert_allclose(g / scale, g_ref / scale, atol=2e-6, err_msg=str(path))
    # Every weight of both directions gets a gradient (none is silently dropped).
    for path, g in flat:
        if "rnn" in "/".join(map(str, path)):
            assert float(np.abs(np.asarray(g[...])).max()) > 0, path


def test_parameter_layout_is_the_checkpoints():
    """The fused path reads the two `nnx.RNN`s' parameters: the tree (checkpoint layout) is
    the one of the step-by-step encoder, names and shapes."""
    enc = _encoder()
    shapes = {
        "/".join(map(str, k)): tuple(v.shape)
        for k, v in nnx.to_flat_state(nnx.state(enc, nnx.Param))
    }
    assert shapes == {
        "embed/embedding": (30, 6),
        "forward_rnn/cell/dense_i/kernel": (6, 24),
        "forward_rnn/cell/dense_i/bias": (24,),
        "forward_rnn/cell/dense_h/kernel": (8, 24),
        "backward_rnn/cell/dense_i/kernel": (6, 24),
        "backward_rnn/cell/dense_i/bias": (24,),
        "backward_rnn/cell/dense_h/kernel": (8, 24),
    }


@pytest.mark.parametrize("vocab", [5, 500])
def test_projected_tokens_equal_embedding_then_projection(vocab):
    """Both paths of `project_tokens` (vocabulary smaller or larger than the 3 x 4 tokens)."""
    enc = _encoder(vocab=vocab)
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, vocab, (3, 4)), jnp.int32)
    fw, bw = gru_cell_weights(enc.forward_rnn.cell), gru_cell_weights(enc.backward_rnn.cell)
    got = project_tokens(tokens, enc.embed.embedding[...], fw, bw)
    x = enc.embed(tokens)
    want = jnp.concatenate([x @ fw["w_i"] + fw["b_i"], x @ bw["w_i"] + bw["b_i"]], axis=-1)
    assert [g.shape for g in got] == [(3, 4, 8)] * 6
    # Gate by gate: forward r, z, n, then backward r, z, n, as `gate_inputs` splits them.
    np.testing.assert_allclose(jnp.concatenate(got, axis=-1), want, rtol=1e-5, atol=1e-6)
    for g, w in zip(got, gate_inputs(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_bigru_projected_names_bad_gate_inputs():
    """A [L, B, 6D] projection passed whole (the layout before the per-gate split) is refused
    with the shapes it got."""
    xp = jnp.zeros((4, 3, 48))
    with pytest.raises(ValueError, match=r"six \[L, B, D\] gate inputs.*\(4, 3, 48\)"):
        gru_module.bigru_projected(
            (xp,), jnp.array([4, 2, 1]), jnp.zeros((8, 24)), jnp.zeros((8, 24))
        )
