"""Synthetic paired benchmark with fully known factors (docs/methods.md §1).

The generator follows the published iVAE data generator (Khemakhem et al. 2020, `data/data.py`
of the reference code): segment-modulated sources, mixing matrices with U(-1, 1) entries and
unit-norm columns resampled until their condition number is below the 25th percentile of
10^4 random draws, and `layers` mixing layers with an activation after every layer but the
last. What is new here [R] is the *query* modality: instead of the one-hot segment label, x is
a high-dimensional observation of the segment,

    x = h(e_s + eps),   e_s ~ N(0, I_e) per segment,   eps ~ N(0, noise^2 I_e),

with h another random mixing into `query_dim` dimensions. `query_kind="onehot"` gives the
label itself (the iVAE special case).

Everything is a deterministic function of `seed` (numpy `default_rng`), independent of the
training seed, so a dataset can be regenerated bit-for-bit on resume.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

ACTIVATIONS = ("xtanh", "leaky_relu", "none")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Every knob of the synthetic benchmark (mirrors `config.data`)."""

    num_segments: int = 40
    points_per_segment: int = 1000
    latent_dim: int = 5
    target_dim: int = 5
    mixing_layers: int = 3
    # True: one D x D matrix reused by every layer after the first (the published iVAE
    # SyntheticDataset's `repeat_linearity=True`); False: a fresh matrix per layer.
    repeat_linearity: bool = False
    activation: str = "xtanh"
    slope: float = 0.1
    std_low: float = 0.5
    std_high: float = 3.0
    source: str = "gaussian"  # or "laplace"
    centered: bool = True  # False adds per-segment means U(-5, 5)
    target_noise: float = 0.0
    query_kind: str = "observed"  # or "onehot"
    query_dim: int = 20
    query_embed_dim: int = 8
    query_noise: float = 0.1
    query_layers: int = 2
    seed: int = 1

    def validate(self) -> None:
        if self.num_segments < 2:
            raise ValueError(f"data.num_segments must be >= 2, got {self.num_segments}")
        if self.points_per_segment < 1:
            raise ValueError(f"data.points_per_segment must be >= 1, got {self.points_per_segment}")
        if self.latent_dim < 1:
            raise ValueError(f"data.latent_dim must be >= 1, got {self.latent_dim}")
        if self.target_dim < self.latent_dim:
            raise ValueError(
                f"data.target_dim ({self.target_dim}) must be >= data.latent_dim "
                f"({self.latent_dim}): the mixing must be injective"
            )
        if self.mixing_layers < 1:
            raise ValueError(f"data.mixing_layers must be >= 1, got {self.mixing_layers}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"data.activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        if self.source not in ("gaussian", "laplace"):
            raise ValueError(f"data.source must be 'gaussian' or 'laplace', got {self.source!r}")
        if self.query_kind not in ("observed", "onehot"):
            raise ValueError(
                f"data.query_kind must be 'observed' or 'onehot', got {self.query_kind!r}"
            )
        if not 0 < self.std_low <= self.std_high:
            raise ValueError(
                f"need 0 < data.std_low <= data.std_high, got {self.std_low}, {self.std_high}"
            )


def _activation(name: str, slope: float):
    if name == "xtanh":
        return lambda a: np.tanh(a) + slope * a
    if name == "leaky_relu":
        return lambda a: np.where(a > 0, a, slope * a)
    return lambda a: a


def _uniform_unit_columns(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    a = rng.uniform(-1.0, 1.0, shape)
    return a / np.linalg.norm(a, axis=-2, keepdims=True)


def mixing_matrix(rng: np.random.Generator, d_in: int, d_out: int) -> np.ndarray:
    """U(-1, 1) matrix with unit-norm columns and a condition number below the 25th percentile.

    As in the iVAE generator, the threshold is the 25th percentile of the condition numbers of
    10^4 random draws of the same shape; draws are repeated until one is below it.
    """
    cond = np.linalg.cond(_uniform_unit_columns(rng, (10_000, d_in, d_out)))
    threshold = np.percentile(cond, 25)
    while True:
        a = _uniform_unit_columns(rng, (d_in, d_out))
        if np.linalg.cond(a) < threshold:
            return a


def random_mlp_mixing(
    rng: np.random.Generator,
    inputs: np.ndarray,
    d_out: int,
    layers: int,
    act,
    *,
    repeat: bool = False,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """`layers` well-conditioned linear maps with `act` after every one but the last.

    `repeat=True` reuses the previous layer's matrix whenever its shape fits (with d_in =
    d_out every layer has the same matrix; otherwise the first is d_in x d_out and the
    rest share one d_out x d_out matrix), as the published iVAE generator does."""
    h = inputs
    mats = []
    for i in range(layers):
        if repeat and mats and mats[-1].shape == (h.shape[1], d_out):
            a = mats[-1]
        else:
            a = mixing_matrix(rng, h.shape[1], d_out)
        mats.append(a)
        h = h @ a
        if i < layers - 1:
            h = act(h)
    return h, mats


def make_synthetic(spec: SyntheticSpec) -> dict[str, Any]:
    """Generates the paired benchmark.

    Returns:
      dict with float32 arrays `x` [N, query_dim] (query modality), `y` [N, target_dim]
      (target modality), `s` [N, latent_dim] (true factors), int32 `segment` [N], and the
      per-segment source stds `std` [M, latent_dim]; N = num_segments * points_per_segment.
    """
    return make_synthetic_with_mixing(spec)[0]


def make_synthetic_with_mixing(spec: SyntheticSpec) -> tuple[dict[str, Any], list[np.ndarray]]:
    """`make_synthetic(spec)` and the target mixing's matrices (first to last), for
    `unmix`."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    m, n, d = spec.num_segments, spec.points_per_segment, spec.latent_dim
    segment = np.repeat(np.arange(m), n)

    std = rng.uniform(spec.std_low, spec.std_high, (m, d))
    mean = np.zeros((m, d)) if spec.centered else rng.uniform(-5.0, 5.0, (m, d))
    if spec.source == "gaussian":
        noise = rng.standard_normal((m * n, d))
    else:
        noise = rng.laplace(0.0, 1.0 / np.sqrt(2.0), (m * n, d))  # unit variance
    s = noise * std[segment] + mean[segment]

    act = _activation(spec.activation, spec.slope)
    y, mats = random_mlp_mixing(
        rng, s, spec.target_dim, spec.mixing_layers, act, repeat=spec.repeat_linearity
    )
    if spec.target_noise > 0:
        y = y + spec.target_noise * rng.standard_normal(y.shape)

    if spec.query_kind == "onehot":
        x = np.eye(m)[segment]
    else:
        emb = rng.standard_normal((m, spec.query_embed_dim))
        e = emb[segment] + spec.query_noise * rng.standard_normal((m * n, spec.query_embed_dim))
        x, _ = random_mlp_mixing(
            rng, e, spec.query_dim, spec.query_layers, _activation("xtanh", 0.1)
        )
    arrays = {
        "x": x.astype(np.float32),
        "y": y.astype(np.float32),
        "s": s.astype(np.float32),
        "segment": segment.astype(np.int32),
        "std": std.astype(np.float32),
    }
    return arrays, mats


def _inverse_activation(name: str, slope: float, b: np.ndarray, *, iters: int = 60):
    if name == "leaky_relu":
        return np.where(b > 0, b, b / slope)
    if name == "none":
        return b
    # xtanh: a -> tanh(a) + slope * a is increasing with |a| <= (|b| + 1) / slope at the
    # solution; bisection to float64 precision, vectorised.
    lo = -(np.abs(b) + 1.0) / slope
    hi = (np.abs(b) + 1.0) / slope
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = np.tanh(mid) + slope * mid > b
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def unmix(y: np.ndarray, mats: list[np.ndarray], *, activation: str, slope: float) -> np.ndarray:
    """The true factors of targets `y` `[..., target_dim]`: the inverse of the mixing that
    `make_synthetic_with_mixing` returns (`[..., latent_dim]`).

    Layer by layer in reverse: the activation's inverse (exact for leaky ReLU, bisection for
    xtanh), then h = y A^+ (the pseudo-inverse: exact for points on the mixing's image,
    least-squares for points off it, e.g. noisy targets or a model's decoded points)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    h = np.asarray(y, np.float64)
    for i in reversed(range(len(mats))):
        if i < len(mats) - 1:
            h = _inverse_activation(activation, slope, h)
        h = h @ np.linalg.pinv(np.asarray(mats[i], np.float64))
    return h
