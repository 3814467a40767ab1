"""A fused, length-masked bidirectional GRU: the maths of two `flax.nnx.GRUCell`s run over a
padded batch, forward and backward, laid out for speed on CPU.

`bidirectional_gru` computes exactly what `nnx.RNN(GRUCell)` forward and `nnx.RNN(GRUCell,
reverse=True, keep_order=True)` compute with `seq_lengths` (the states at valid positions and
the state after each sequence's last valid step), with the same parameters, but

* the input projections x W_i + b_i of both directions and every step are computed before
  the recurrence (`GRUCell` computes them inside every step), and when the vocabulary is
  smaller than the batch's tokens, from one matmul of the word embedding table, gathered
  (`project_tokens`);
* the projections are kept as one [L, B, D] array per gate: the loop reads row k of each,
  not column slices of one [L, B, 6D] row (XLA:CPU ran element-wise fusions that read column
  slices of a dynamically indexed row several times slower);
* both directions advance in one loop (the forward direction at time k, the backward one at
  T - 1 - k, T the batch's longest length), two [B, D] x [D, 3D] matmuls per step (one
  batched matmul of the two was slower on CPU);
* the backward direction needs no per-sequence flip: its state stays at zero until it reaches
  the sequence's last valid word, which is what starting the reversed sequence there gives;
* the gradient is hand-written (`jax.custom_vjp`): its loop carries the state's cotangent
  and stacks the gates' input cotangents per gate; the recurrent weights' gradient
  sum_k h_{k-1}^T dA_k is added at every step inside the loop up to D = 256 (one small
  matmul that runs beside the step's other work; at D = 128 this beat one matmul over all
  steps after the loop, which needed the gates' cotangents concatenated and transposed
  first) and is one matmul after the loop above it (at D = 1,024 the big matmul wins).

The GRU (`GRUCell`'s gate order r, z, n; no recurrent bias):
  r = sigmoid(x W_ir + b_ir + h W_hr),  z = sigmoid(x W_iz + b_iz + h W_hz)
  n = tanh(x W_in + b_in + r * (h W_hn)),  h' = (1 - z) * n + z * h
Past a sequence's length the forward state is held (not updated), so its final state is the
state after the last valid word; outputs at padded positions are that held state (forward) or
zero (backward) and are meant to be masked by the caller, as the `nnx.RNN` outputs there are.
The loop runs to the batch's longest sequence (a traced trip count: no recompilation per
length), so padding beyond every caption costs nothing. Reverse mode only: the gradient is a
`jax.custom_vjp`, so forward-mode differentiation (`jax.jvp`) of it raises; the step-by-step
reference (`GRUTextEncoder.fused = False`) has both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _cell(w_h, xr, xz, xn, h, valid):
    """One GRU step: xr, xz, xn [B, D] (the gates' projected inputs), h [B, D], valid [B]."""
    d = h.shape[-1]
    hh = h @ w_h
    r = jax.nn.sigmoid(xr + hh[:, :d])
    z = jax.nn.sigmoid(xz + hh[:, d : 2 * d])
    hh_n = hh[:, 2 * d :]
    n = jnp.tanh(xn + r * hh_n)
    new = (1.0 - z) * n + z * h
    return jnp.where(valid[:, None], new, h), (r, z, n, hh_n)


def _cell_bwd(w_h_t, g, valid, h_prev, gates):
    """Cotangents of one step, g = d loss / d h_k: (d h_{k-1}, (da_r, da_z, da_n))."""
    r, z, n, hh_n = gates
    v = valid[:, None]
    gv = jnp.where(v, g, 0.0)  # the step's own update, if it happened
    da_n = gv * (1.0 - z) * (1.0 - n * n)
    da_r = da_n * hh_n * r * (1.0 - r)
    da_z = gv * (h_prev - n) * z * (1.0 - z)
    d_hh = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)
    return jnp.where(v, gv * z, g) + d_hh @ w_h_t, (da_r, da_z, da_n), d_hh


def _put(buf, row, k):
    return jax.lax.dynamic_update_index_in_dim(buf, row, k, 0)


def _get(buf, k):
    return jax.lax.dynamic_index_in_dim(buf, k, 0, keepdims=False)


def _run_forward(w_f, w_b, xs, lengths, steps):
    seq, b, d = xs[0].shape
    zeros = jnp.zeros((seq, b, d), xs[0].dtype)
    h0 = jnp.zeros((b, d), xs[0].dtype)

    def body(k, carry):
        hf, hb, out_f, out_b, res_f, res_b = carry
        tb = steps - 1 - k  # the backward direction's position at loop step k
        hf, gates_f = _cell(w_f, *(_get(x, k) for x in xs[:3]), hf, k < lengths)
        hb, gates_b = _cell(w_b, *(_get(x, tb) for x in xs[3:]), hb, tb < lengths)
        res_f = tuple(_put(r, g, k) for r, g in zip(res_f, gates_f, strict=True))
        res_b = tuple(_put(r, g, tb) for r, g in zip(res_b, gates_b, strict=True))
        return hf, hb, _put(out_f, hf, k), _put(out_b, hb, tb), res_f, res_b

    init = (h0, h0, zeros, zeros, (zeros,) * 4, (zeros,) * 4)
    return jax.lax.fori_loop(0, steps, body, init)


@jax.custom_vjp
def _bigru(w_f, w_b, xs, lengths, steps):
    hf_last, hb_last, out_f, out_b, _, _ = _run_forward(w_f, w_b, xs, lengths, steps)
    return out_f, out_b, hf_last, hb_last


def _bigru_fwd(w_f, w_b, xs, lengths, steps):
    hf_last, hb_last, out_f, out_b, res_f, res_b = _run_forward(w_f, w_b, xs, lengths, steps)
    res = (w_f, w_b, lengths, steps, out_f, out_b, res_f, res_b)
    return (out_f, out_b, hf_last, hb_last), res


# Up to this width the recurrent weights' gradient is summed inside the backward loop, one
# small matmul per step; wider, in one matmul over all steps after it (at D = 128 the loop
# form made the text encoder's forward + backward ~1.3x faster, at D = 1,024 ~5% slower:
# `docs/performance.md`, "DisNCL step").
LOOP_WEIGHT_GRAD_MAX_DIM = 256


def _bigru_bwd(res, cotangents):
    w_f, w_b, lengths, steps, out_f, out_b, res_f, res_b = res
    d_out_f, d_out_b, d_last_f, d_last_b = cotangents
    seq, b, d = out_f.shape
    w_f_t, w_b_t = w_f.T, w_b.T
    zero_row = jnp.zeros((b, d), out_f.dtype)
    in_loop = d <= LOOP_WEIGHT_GRAD_MAX_DIM

    def body(j, carry):
        dh_f, dh_b, da_f, da_b, gw_f, gw_b = carry
        k = steps - 1 - j  # the forward direction's position; the backward one's is tb
        tb = j
        hp_f = jnp.where(k > 0, _get(out_f, jnp.maximum(k - 1, 0)), zero_row)
        hp_b = jnp.where(tb + 1 < seq, _get(out_b, jnp.minimum(tb + 1, seq - 1)), zero_row)
        gates_f = tuple(_get(r, k) for r in res_f)
        gates_b = tuple(_get(r, tb) for r in res_b)
        dh_f, a_f, dhh_f = _cell_bwd(w_f_t, dh_f + _get(d_out_f, k), k < lengths, hp_f, gates_f)
        dh_b, a_b, dhh_b = _cell_bwd(w_b_t, dh_b + _get(d_out_b, tb), tb < lengths, hp_b, gates_b)
        da_f = tuple(_put(buf, a, k) for buf, a in zip(da_f, a_f, strict=True))
        da_b = tuple(_put(buf, a, tb) for buf, a in zip(da_b, a_b, strict=True))
        if in_loop:
            gw_f = gw_f + hp_f.T @ dhh_f
            gw_b = gw_b + hp_b.T @ dhh_b
        return dh_f, dh_b, da_f, da_b, gw_f, gw_b

    zeros = jnp.zeros((seq, b, d), out_f.dtype)
    gw0 = jnp.zeros_like(w_f) if in_loop else None
    init = (d_last_f, d_last_b, (zeros,) * 3, (zeros,) * 3, gw0, gw0)
    _, _, da_f, da_b, d_w_f, d_w_b = jax.lax.fori_loop(0, steps, body, init)
    if not in_loop:
        # sum_t h_prev(t)^T d hh(t): the state before the forward step t is out_f[t - 1],
        # before the backward step t out_b[t + 1]; both start from zero, and rows past
        # `steps` hold zeros. d hh = (da_r, da_z, da_n * r).
        dhh_f = jnp.concatenate([da_f[0], da_f[1], da_f[2] * res_f[0]], axis=-1)
        dhh_b = jnp.concatenate([da_b[0], da_b[1], da_b[2] * res_b[0]], axis=-1)
        d_w_f = jnp.einsum("tbd,tbe->de", out_f[:-1], dhh_f[1:])
        d_w_b = jnp.einsum("tbd,tbe->de", out_b[1:], dhh_b[:-1])
    return d_w_f, d_w_b, (*da_f, *da_b), None, None


_bigru.defvjp(_bigru_fwd, _bigru_bwd)


def _concat_weights(forward, backward):
    w_i = jnp.concatenate([forward["w_i"], backward["w_i"]], axis=1)  # [W, 6D]
    return w_i, jnp.concatenate([forward["b_i"], backward["b_i"]])


def project_tokens(
    tokens: jax.Array,
    embedding: jax.Array,
    forward: dict[str, jax.Array],
    backward: dict[str, jax.Array],
) -> tuple[jax.Array, ...]:
    """Both directions' input projections E[tokens] W_i + b_i for time-major tokens [L, B] and
    a word embedding E [V, W], one [L, B, D] array per gate: (r, z, n) of the forward
    direction, then of the backward one (`gate_inputs` splits a [.., 6D] projection the
    same way). When the vocabulary is smaller than the batch (V < L B) the vocabulary is
    projected once and the tokens' rows gathered, (E W_i + b_i)[tokens]: the same numbers,
    V / (L B) of the matmul work and of its gradient's."""
    w_i, b_i = _concat_weights(forward, backward)
    if embedding.shape[0] < tokens.size:
        return tuple(jnp.take(t, tokens, axis=0) for t in gate_inputs(embedding @ w_i + b_i))
    # One matmul per gate, not one [.., 6D] result sliced (slicing copies, ~5% slower at D = 1,024).
    x = jnp.take(embedding, tokens, axis=0)
    return tuple(x @ w + b for w, b in zip(gate_inputs(w_i), gate_inputs(b_i), strict=True))


def gate_inputs(xp: jax.Array) -> tuple[jax.Array, ...]:
    """A [..., 6D] array (forward r, z, n, then backward r, z, n along the last axis: a
    projection, or the concatenated input weights and biases) as six [..., D] arrays, the
    layout `bigru_projected` reads."""
    d = xp.shape[-1] // 6
    return tuple(xp[..., g * d : (g + 1) * d] for g in range(6))


def bigru_projected(
    xs: tuple[jax.Array, ...], lengths: jax.Array, w_h_forward: jax.Array, w_h_backward: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The recurrence of `bidirectional_gru` on projected time-major inputs, one [L, B, D]
    array per gate (`project_tokens`, `gate_inputs`): (fwd [L, B, D], bwd [L, B, D],
    fwd_last, bwd_last). The loop runs max(lengths) steps, not L: positions at or past the
    longest sequence are zero."""
    xs = tuple(xs)
    if len(xs) != 6 or any(x.shape != xs[0].shape or x.ndim != 3 for x in xs):
        raise ValueError(
            "bigru_projected expects six [L, B, D] gate inputs (forward r, z, n, backward "
            f"r, z, n), got shapes {[tuple(x.shape) for x in xs]}"
        )
    lengths = lengths.astype(jnp.int32)
    steps = jnp.clip(jnp.max(lengths), 1, xs[0].shape[0])
    return _bigru(w_h_forward, w_h_backward, xs, lengths, steps)


def bidirectional_gru(
    x: jax.Array,
    lengths: jax.Array,
    forward: dict[str, jax.Array],
    backward: dict[str, jax.Array],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Both directions of a GRU over a padded batch, masked by length.

    Args:
      x: [B, L, W] inputs.
      lengths: [B] int valid lengths (1 <= length <= L).
      forward, backward: each direction's `GRUCell` weights: `w_i` [W, 3D] and `b_i` [3D]
        (`dense_i.kernel`, `dense_i.bias`), `w_h` [D, 3D] (`dense_h.kernel`).

    Returns:
      (fwd [B, L, D], bwd [B, L, D], fwd_last [B, D], bwd_last [B, D]): the forward state
      after each word, the backward state after each word (reading from the sequence's end),
      the forward state after the last valid word and the backward state after the first.
      Values at padded positions are unspecified (mask them).
    """
    w_i, b_i = _concat_weights(forward, backward)
    xs = gate_inputs(jnp.swapaxes(x, 0, 1) @ w_i + b_i)  # every step's projection at once
    fwd, bwd, fwd_last, bwd_last = bigru_projected(xs, lengths, forward["w_h"], backward["w_h"])
    return jnp.swapaxes(fwd, 0, 1), jnp.swapaxes(bwd, 0, 1), fwd_last, bwd_last


def gru_cell_weights(cell) -> dict[str, jax.Array]:
    """`bidirectional_gru`'s weights of one direction from a `flax.nnx.GRUCell`."""
    return {
        "w_i": cell.dense_i.kernel[...],
        "b_i": cell.dense_i.bias[...],
        "w_h": cell.dense_h.kernel[...],
    }


__all__ = [
    "bidirectional_gru",
    "bigru_projected",
    "gate_inputs",
    "gru_cell_weights",
    "project_tokens",
]
