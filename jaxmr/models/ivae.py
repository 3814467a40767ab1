"""Flax NNX modules for the iIVAE family: MLPs, the invertible residual embedding g, the
conditional prior p(z|x), and the Gaussian encoder/decoder of the explicit-decoder baselines.

No losses here: modules return the quantities the losses in `jaxmr.losses` consume.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmr.losses import lapack_free


def lipswish(x):
    """Swish scaled to Lipschitz constant 1 (Chen et al. 2019, residual flows): smooth and
    non-saturating, so residual branches can reach kinked (leaky-ReLU) inverses."""
    return x * jax.nn.sigmoid(x) / 1.1


ACTIVATIONS = {
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "lipswish": lipswish,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2),
    "xtanh": lambda x: jnp.tanh(x) + 0.1 * x,
}


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nnx.Module):
    """Dense layers with an activation between them (none after the last)."""

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        *,
        activation: str = "tanh",
        final_init_scale: float = 1.0,
        rngs: nnx.Rngs,
    ):
        dims = [in_dim, *hidden, out_dim]
        self.act = _activation(activation)
        self.num_layers = len(dims) - 1
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = i == self.num_layers - 1
            init = nnx.initializers.variance_scaling(
                final_init_scale**2 if last else 1.0, "fan_avg", "uniform"
            )
            setattr(self, f"dense_{i}", nnx.Linear(a, b, kernel_init=init, rngs=rngs))

    def __call__(self, x):
        for i in range(self.num_layers):
            x = getattr(self, f"dense_{i}")(x)
            if i < self.num_layers - 1:
                x = self.act(x)
        return x

    def kernels(self) -> list[jax.Array]:
        """The dense layers' weight matrices, `[in, out]` each (y = x W + b)."""
        return [getattr(self, f"dense_{i}").kernel[...] for i in range(self.num_layers)]

    def forward_with_slopes(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        """The output and, for every hidden layer, the activation's slope act'(a) at its
        pre-activations a (`[..., width]`): with `kernels()`, what
        `jaxmr.losses.jacobian.mlp_jacobian_transposed` needs. The activations are
        element-wise, so one JVP with a tangent of ones gives all slopes."""
        slopes = []
        for i in range(self.num_layers):
            x = getattr(self, f"dense_{i}")(x)
            if i < self.num_layers - 1:
                x, slope = jax.jvp(self.act, (x,), (jnp.ones_like(x),))
                slopes.append(slope)
        return x, slopes


class ResidualFlow(nnx.Module):
    """g = A_K o (I + h_K) o ... o A_1 o (I + h_1) o W on R^D, with optional per-dimension
    affine layers A_k (exact log det = sum of log scales) and an optional learnable dense
    linear layer W first (y -> (y - b) W, exact log det = log |det W|, one D x D
    determinant per step, shared by the batch).

    Each residual branch h_k is an MLP; it is invertible while Lip(h_k) < 1 (Banach fixed
    point), which the training loss enforces through the Jacobian spectral-norm penalty.
    Branches are initialised with small output weights so that training starts invertible.
    W starts at the identity (a task may overwrite it, e.g. with a PCA rotation of the
    data); it stays invertible because log |det W| enters the likelihood.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_blocks: int = 4,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        affine: bool = True,
        init_scale: float = 0.1,
        linear: bool = False,
        rngs: nnx.Rngs,
    ):
        self.dim = dim
        self.num_blocks = num_blocks
        self.affine = affine
        self.linear = linear
        if linear:
            self.linear_weight = nnx.Param(jnp.eye(dim))
            self.linear_bias = nnx.Param(jnp.zeros((dim,)))
        for k in range(num_blocks):
            setattr(
                self,
                f"block_{k}",
                MLP(
                    dim, hidden, dim, activation=activation, final_init_scale=init_scale, rngs=rngs
                ),
            )
            if affine:
                setattr(self, f"log_scale_{k}", nnx.Param(jnp.zeros((dim,))))
                setattr(self, f"shift_{k}", nnx.Param(jnp.zeros((dim,))))

    def branch(self, k: int):
        return getattr(self, f"block_{k}")

    def _linear_in(self, y: jax.Array) -> jax.Array:
        if not self.linear:
            return y
        return (y - self.linear_bias[...]) @ self.linear_weight[...]

    def linear_log_det(self) -> jax.Array:
        """log |det W| of the first linear layer (0 without one)."""
        if not self.linear:
            return jnp.zeros(())
        return lapack_free.log_abs_det(self.linear_weight[...])

    def __call__(self, y: jax.Array) -> jax.Array:
        """g(y) for `[..., D]` without Jacobian terms."""
        y = self._linear_in(y)
        for k in range(self.num_blocks):
            y = y + self.branch(k)(y)
            if self.affine:
                y = (
                    y * jnp.exp(getattr(self, f"log_scale_{k}")[...])
                    + getattr(self, f"shift_{k}")[...]
                )
        return y

    def forward_with_blocks(self, y: jax.Array) -> tuple[jax.Array, jax.Array, list[tuple]]:
        """g(y) and what each residual block's Jacobian terms need; the losses decide how to
        compute them (`jaxmr.losses.flow.residual_flow_jacobian_terms`).

        Args:
          y: `[B, D]`.

        Returns:
          (z `[B, D]`, log |det W| of the linear layer (scalar, 0 without one), blocks): one
          `(h_k, y_k, a_k, s_k)` per block k: the residual branch h_k, its input y_k `[B, D]`,
          the block's affine log det a_k = sum of its log scales (scalar, 0 without affine
          layers), and the branch's activation slopes at y_k (`MLP.forward_with_slopes`, from
          this pass), from which its Jacobian can be formed without another pass.
        """
        linear_log_det = self.linear_log_det()
        y = self._linear_in(y)
        blocks = []
        for k in range(self.num_blocks):
            h = self.branch(k)
            y_in = y
            out, slopes = h.forward_with_slopes(y)
            y = y + out
            affine_log_det = jnp.zeros((), y.dtype)
            if self.affine:
                log_scale = getattr(self, f"log_scale_{k}")[...]
                y = y * jnp.exp(log_scale) + getattr(self, f"shift_{k}")[...]
                affine_log_det = jnp.sum(log_scale)
            blocks.append((h, y_in, affine_log_det, slopes))
        return y, linear_log_det, blocks

    def inverse(self, z: jax.Array, *, num_iters: int = 100) -> jax.Array:
        """g^{-1}(z) by fixed-point iteration, block by block in reverse: the implicit decoder
        made explicit. For each block, y_k = z_k - h_k(y_k) converges geometrically at rate
        Lip(h_k) < 1 from y_k = z_k."""
        for k in reversed(range(self.num_blocks)):
            if self.affine:
                z = (z - getattr(self, f"shift_{k}")[...]) * jnp.exp(
                    -getattr(self, f"log_scale_{k}")[...]
                )
            h = self.branch(k)
            target = z
            z = jax.lax.fori_loop(0, num_iters, lambda _, v, h=h, t=target: t - h(v), target)
        if self.linear:
            z = jnp.linalg.solve(self.linear_weight[...].T, z.T).T + self.linear_bias[...]
        return z


class ConditionalPrior(nnx.Module):
    """p(z | x) = N(mu(x), diag sigma^2(x)), factorised Gaussian.

    mean: `learned` (mu from the network), `zero` (mu = 0, as in the iVAE reference code).
    conditional=False gives an unconditional learned Gaussian (ablation: shows that
    conditioning on the query is what buys identifiability).
    """

    def __init__(
        self,
        x_dim: int,
        latent_dim: int,
        *,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        mean: str = "learned",
        conditional: bool = True,
        rngs: nnx.Rngs,
    ):
        if mean not in ("learned", "zero"):
            raise ValueError(f"prior mean must be 'learned' or 'zero', got {mean!r}")
        self.latent_dim = latent_dim
        self.learn_mean = mean == "learned"
        self.conditional = conditional
        out = 2 * latent_dim if self.learn_mean else latent_dim
        if conditional:
            self.net = MLP(x_dim, hidden, out, activation=activation, rngs=rngs)
        else:
            self.const = nnx.Param(jnp.zeros((out,)))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.conditional:
            out = self.net(x)
        else:
            out = jnp.broadcast_to(self.const[...], x.shape[:-1] + self.const.shape)
        if self.learn_mean:
            mean, logvar = jnp.split(out, 2, axis=-1)
        else:
            mean, logvar = jnp.zeros_like(out), out
        return mean, logvar


class GaussianEncoder(nnx.Module):
    """q(z | inputs) = N(m, diag s^2) from one MLP with 2d outputs, or (`split_heads`) from
    two separate MLPs for m and log s^2, as in the iVAE reference code."""

    def __init__(
        self,
        in_dim,
        latent_dim,
        *,
        hidden=(64, 64),
        activation="tanh",
        split_heads: bool = False,
        rngs,
    ):
        self.split_heads = split_heads
        if split_heads:
            self.mean_net = MLP(in_dim, hidden, latent_dim, activation=activation, rngs=rngs)
            self.logvar_net = MLP(in_dim, hidden, latent_dim, activation=activation, rngs=rngs)
        else:
            self.net = MLP(in_dim, hidden, 2 * latent_dim, activation=activation, rngs=rngs)

    def __call__(self, inputs):
        if self.split_heads:
            return self.mean_net(inputs), self.logvar_net(inputs)
        mean, logvar = jnp.split(self.net(inputs), 2, axis=-1)
        return mean, logvar
