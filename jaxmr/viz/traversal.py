"""Latent-traversal figures: image grids (one row per latent), the true factors' response to
each latent, and the fixed-point inverse's convergence.

Written as PNG by ``eval.py`` (the iIVAE task's `TraversalEvaluator`). Figures are built on
``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot state); raw grids are written
pixel for pixel with ``matplotlib.image.imsave``, so a grid file's size is known exactly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.image
import numpy as np
from matplotlib.figure import Figure


def image_grid(
    tiles: np.ndarray, *, gap: int = 1, block_rows: int = 0, block_gap: int = 4, fill: float = 1.0
) -> np.ndarray:
    """Tiles `[R, C, H, W, 3]` (values in [0, 1]) laid out as one `[R*H + gaps, C*W + gaps, 3]`
    image: `gap` pixels between tiles, and `block_gap` instead after every `block_rows` rows
    (0: no blocks), all filled with `fill`.

    Size: height R*H + (R - 1)*gap + (R//block_rows - 1)*(block_gap - gap) with blocks,
    width C*W + (C - 1)*gap.
    """
    tiles = np.asarray(tiles, np.float32)
    if tiles.ndim != 5 or tiles.shape[-1] != 3:
        raise ValueError(f"tiles must be [rows, cols, H, W, 3], got {tiles.shape}")
    r, c, h, w, _ = tiles.shape
    if block_rows and r % block_rows:
        raise ValueError(f"{r} rows do not split into blocks of {block_rows}")
    tops, y = [], 0
    for i in range(r):
        tops.append(y)
        y += h + (block_gap if block_rows and (i + 1) % block_rows == 0 else gap)
    height = tops[-1] + h
    width = c * w + (c - 1) * gap
    out = np.full((height, width, 3), fill, np.float32)
    for i in range(r):
        for j in range(c):
            x0 = j * (w + gap)
            out[tops[i] : tops[i] + h, x0 : x0 + w] = tiles[i, j]
    return np.clip(out, 0.0, 1.0)


def save_image_grid(grid: np.ndarray, path: str | os.PathLike) -> str:
    """Writes `grid` `[H, W, 3]` in [0, 1] as a PNG of exactly H x W pixels."""
    path = os.fspath(path)
    matplotlib.image.imsave(path, np.clip(np.asarray(grid, np.float32), 0.0, 1.0), format="png")
    return path


def plot_image_traversal(
    grid: np.ndarray,
    path: str | os.PathLike,
    *,
    tile: int,
    gap: int,
    row_labels: Sequence[str],
    row_tops: Sequence[int],
    col_labels: Sequence[str],
    title: str = "",
) -> str:
    """The grid of `image_grid` with row labels (latent, matched factor) and column labels
    (traversal value), upscaled for reading."""
    h, w, _ = grid.shape
    scale = max(1.0, 480.0 / w)  # figure inches per 100 grid pixels
    left, top, bottom = 1.4, 0.35, 0.3  # margins in inches: labels, title
    img_w, img_h = w * scale / 100, h * scale / 100
    fig_w, fig_h = img_w + left + 0.1, img_h + top + bottom
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([t + tile / 2 for t in row_tops], labels=list(row_labels), fontsize=7)
    ax.set_xticks(
        [j * (tile + gap) + tile / 2 for j in range(len(col_labels))],
        labels=list(col_labels),
        fontsize=6,
    )
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        fig.text(0.01, 0.005, title, fontsize=7, va="bottom")
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


def plot_factor_response(
    response: np.ndarray,
    path: str | os.PathLike,
    *,
    factor_names: Sequence[str],
    title: str = "",
) -> str:
    """Heatmap of `response` `[d latents, k factors]`: how far each true factor moves (in
    units of its std) while one latent is traversed, the others held."""
    r = np.asarray(response, np.float64)
    d, k = r.shape
    if len(factor_names) != k:
        raise ValueError(f"{len(factor_names)} factor names for {k} factor columns")
    fig = Figure(figsize=(1.6 + 0.6 * k, 1.2 + 0.5 * d), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(r, cmap="viridis", vmin=0.0, vmax=max(float(np.nanmax(r)), 1e-9))
    for i in range(d):
        for j in range(k):
            dark = r[i, j] < 0.6 * np.nanmax(r)
            ax.text(
                j, i, f"{r[i, j]:.2f}", ha="center", va="center", fontsize=7,
                color="white" if dark else "black",
            )  # fmt: skip
    ax.set_xticks(range(k), labels=list(factor_names))
    ax.set_yticks(range(d), labels=[f"z{i}" for i in range(d)])
    ax.set_xlabel("true factor (range moved / its std)")
    ax.set_ylabel("traversed latent")
    ax.set_title(title or "which factor moves when one latent moves", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


def plot_factor_traversal(
    values: np.ndarray,
    factors: np.ndarray,
    path: str | os.PathLike,
    *,
    factor_names: Sequence[str],
) -> str:
    """One panel per latent i: every true factor (recovered from the decoded target) against
    the traversed value of z_i, for one data point. `values` `[d, T]`, `factors` `[d, T, k]`."""
    values, factors = np.asarray(values), np.asarray(factors)
    d, _, k = factors.shape
    fig = Figure(figsize=(2.4 * d, 2.3), dpi=100)
    axes = fig.subplots(1, d, squeeze=False)[0]
    for i, ax in enumerate(axes):
        for j in range(k):
            ax.plot(values[i], factors[i, :, j], marker=".", label=factor_names[j])
        ax.set_xlabel(f"z{i}")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("true factor")
    axes[-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


def plot_inverse_convergence(
    iterations: Sequence[int],
    residuals: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    tolerance: float,
) -> str:
    """Max residual |g(g^{-1}(z)) - z| against the fixed-point iterations per block, one line
    per set of points z (log-log)."""
    fig = Figure(figsize=(4.2, 3.0), dpi=100)
    ax = fig.add_subplot()
    for name, res in residuals.items():
        ax.loglog(
            iterations, np.maximum(np.asarray(res, np.float64), 1e-12), marker="o", label=name
        )
    ax.axhline(tolerance, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("fixed-point iterations per block")
    ax.set_ylabel("max |g(g⁻¹(z)) − z|")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path
