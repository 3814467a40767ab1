"""Masking helpers shared by the loss modules (the "double where" convention).

Losses take `where=` ([N] bool, valid examples). Entries that touch a masked example are
zeroed *before* any exp/log, so garbage there (even inf) gives exactly zero, finite gradients
instead of 0 * inf = NaN.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def valid_mask(n: int, where: chex.Array | None) -> jax.Array:
    """[n] bool: `where`, or all True."""
    if where is None:
        return jnp.ones((n,), dtype=bool)
    chex.assert_shape(where, (n,))
    return jnp.asarray(where, dtype=bool)


def zero_masked_pairs(x: chex.Array, valid: jax.Array) -> jax.Array:
    """Zeroes every entry of an [N, N] matrix that touches a masked example."""
    return jnp.where(valid[:, None] & valid[None, :], x, 0.0)


def check_square(scores: chex.Array) -> None:
    """Raises unless `scores` is [N, N] (annotated pairs on the diagonal)."""
    chex.assert_rank(scores, 2)
    if scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be square [N, N] (pairs on the diagonal): {scores.shape}")
