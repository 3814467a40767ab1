"""Gradient reversal: identity on the forward pass, -lambda times the gradient on the way back."""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def _reverse(x, scale):
    return x


def _reverse_fwd(x, scale):
    return x, scale


def _reverse_bwd(scale, g):
    flipped = jax.tree.map(lambda t: (-scale * t).astype(t.dtype), g)
    # The scale is a hyperparameter (possibly a traced schedule value): no gradient flows to it.
    return flipped, jnp.zeros_like(scale)


_reverse.defvjp(_reverse_fwd, _reverse_bwd)


def gradient_reversal(x, *, scale: float | jax.Array = 1.0):
    """Identity map whose backward pass multiplies the incoming gradient by ``-scale``.

    .. math:: R_\\lambda(x) = x, \\qquad \\frac{\\partial R_\\lambda}{\\partial x} = -\\lambda I

    Placed between an encoder and an adversary (a discriminator or MI critic), one backward
    pass of the adversary's loss trains the adversary to minimise it and the encoder to
    maximise it (scaled by lambda), as in domain-adversarial training.

    Args:
      x: an array or a pytree of arrays.
      scale: lambda >= 0; a Python float or a traced scalar (e.g. a ramp schedule).

    Returns:
      ``x`` unchanged.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> jax.grad(lambda x: jnp.sum(gradient_reversal(x, scale=0.5) ** 2))(jnp.ones(2))
      Array([-1., -1.], dtype=float32)

    References:
      Ganin & Lempitsky, Unsupervised Domain Adaptation by Backpropagation, ICML 2015.
    """
    return _reverse(x, jnp.asarray(scale, dtype=jnp.result_type(float)))
