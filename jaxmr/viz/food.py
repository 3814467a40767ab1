"""Food-factor figures: latent-by-factor Spearman heatmap and per-latent extremes galleries.

Written as PNG by ``eval.py`` for Recipe1M runs. Figures are built on
``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot state), so they are safe in
headless and threaded code.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

_ANNOTATE_MAX_CELLS = 240


def factor_heatmap(
    spearman: Any,
    factor_names: Sequence[str],
    path: str | os.PathLike,
    *,
    latent_names: Sequence[str] | None = None,
    matched: Sequence[tuple[int, int]] | None = None,
    title: str = "Spearman correlation of latents with food factors",
) -> str:
    """Heatmap of a ``[k factors, d latents]`` correlation matrix, written as PNG.

    Args:
        spearman: ``[k, d]`` correlations in [-1, 1] (NaN cells drawn grey), e.g.
            ``food_factor_alignment(...)["spearman"]``.
        factor_names: ``k`` row labels.
        path: output ``.png``.
        latent_names: ``d`` column labels (default ``z0 .. z{d-1}``).
        matched: ``(factor, latent)`` pairs to outline (the Hungarian matching).
        title: figure title.

    Returns:
        The written path.
    """
    rho = np.asarray(spearman, np.float64)
    if rho.ndim != 2 or rho.shape[0] != len(factor_names):
        raise ValueError(
            f"spearman must be [k, d] with k={len(factor_names)} factor names, got {rho.shape}"
        )
    k, d = rho.shape
    latent_names = list(latent_names) if latent_names is not None else [f"z{j}" for j in range(d)]
    if len(latent_names) != d:
        raise ValueError(f"{len(latent_names)} latent names for {d} latent columns")
    fig = Figure(figsize=(max(4.0, 0.45 * d + 2.5), max(2.5, 0.45 * k + 1.5)), dpi=100)
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(rho)
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.8")
    im = ax.imshow(masked, cmap=cmap, vmin=-1, vmax=1, aspect="auto")
    ax.set_yticks(range(k), labels=list(factor_names))
    step = max(1, d // 32)
    ax.set_xticks(range(0, d, step), labels=latent_names[::step], rotation=90 if d > 12 else 0)
    ax.set_xlabel("latent")
    if k * d <= _ANNOTATE_MAX_CELLS:
        for i in range(k):
            for j in range(d):
                if np.isfinite(rho[i, j]):
                    ax.text(
                        j, i, f"{rho[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(rho[i, j]) > 0.6 else "black",
                    )  # fmt: skip
    for i, j in matched or ():
        ax.add_patch(_rect(j - 0.5, i - 0.5, edgecolor="black", linewidth=2.0, fill=False))
    fig.colorbar(im, ax=ax, label="Spearman ρ")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


def _rect(x: float, y: float, **kwargs: Any) -> Any:
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    return Rectangle((x, y), 1.0, 1.0, **kwargs)


def extreme_indices(values: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n`` lowest (ascending) and ``n`` highest (descending) values.

    Args:
        values: ``[N]`` scores (e.g. one latent over the test set).
        n: items per end (capped at ``N // 2`` so the two ends never share an item).

    Returns:
        ``(low, high)`` int arrays.
    """
    v = np.asarray(values, np.float64)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be a finite 1-D array, got shape {v.shape}")
    n = min(n, len(v) // 2)
    order = np.argsort(v, kind="stable")
    return order[:n], order[::-1][:n]


def _load(img: Any, thumb: int) -> np.ndarray:
    if isinstance(img, (str, os.PathLike)):
        from PIL import Image  # noqa: PLC0415

        try:
            with Image.open(img) as im:
                im = im.convert("RGB")
                im.thumbnail((thumb, thumb))
                return np.asarray(im)
        except Exception:  # an unreadable file becomes a grey tile  # noqa: BLE001
            return np.full((thumb, thumb, 3), 200, np.uint8)
    arr = np.asarray(img)
    if arr.ndim == 4:  # [M, H, W, 3] (several images per recipe): show the first
        arr = arr[0]
    return arr


def extremes_gallery(
    values: Any,
    images: Sequence[Any],
    titles: Sequence[str],
    path: str | os.PathLike,
    *,
    n: int = 6,
    name: str = "z",
    thumb: int = 128,
    side_label: str = "",
) -> str:
    """Gallery of the items at both extremes of one latent: lowest row, highest row.

    Args:
        values: ``[N]`` latent values over the items.
        images: ``N`` images: ``uint8 [H, W, 3]`` (or ``[M, H, W, 3]``, first shown) arrays,
            or file paths.
        titles: ``N`` recipe titles (wrapped, shortened).
        path: output ``.png``.
        n: items per row.
        name: latent name for the labels.
        thumb: longest side of thumbnails loaded from files.
        side_label: which latents these are, in words, added to the title.

    Returns:
        The written path.
    """
    if not (len(images) == len(titles) == len(np.asarray(values))):
        raise ValueError(
            f"values, images and titles must have one entry per item, got "
            f"{len(np.asarray(values))}, {len(images)}, {len(titles)}"
        )
    low, high = extreme_indices(values, n)
    v = np.asarray(values, np.float64)
    cols = max(len(low), 1)
    fig = Figure(figsize=(1.9 * cols, 5.2), dpi=100)
    grid = fig.add_gridspec(2, cols)
    for row, (label, idx) in enumerate(((f"lowest {name}", low), (f"highest {name}", high))):
        for c, i in enumerate(idx):
            ax = fig.add_subplot(grid[row, c])
            ax.imshow(_load(images[i], thumb))
            ax.set_xticks([])
            ax.set_yticks([])
            short = textwrap.shorten(str(titles[i]), width=40, placeholder="…")
            ax.set_title("\n".join(textwrap.wrap(short, 20)[:2]), fontsize=7)
            ax.set_xlabel(f"{v[i]:+.2f}", fontsize=7)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    heading = f"{name}: items at both extremes"
    fig.suptitle(f"{heading}\n{side_label}" if side_label else heading, fontsize=10)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


def write_food_figures(
    latents: Any,
    alignment: dict[str, Any],
    images: Sequence[Any],
    titles: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    latent_indices: Sequence[int] | None = None,
    n: int = 6,
    prefix: str = "",
    latent_symbol: str = "z",
    side_label: str = "",
) -> list[str]:
    """Writes the heatmap and one extremes gallery per latent into ``out_dir``.

    Args:
        latents: ``[N, d]`` latents of the test items.
        alignment: output of :func:`jaxmr.data.food_factors.food_factor_alignment`.
        images: ``N`` images or paths.
        titles: ``N`` titles.
        out_dir: output folder (created).
        latent_indices: latents to draw galleries for (default: all when ``d <= 16``,
            else those matched to the lexicon factors).
        n: items per gallery row.
        prefix: file-name prefix, e.g. ``target_`` (one set of figures per scored side).
        latent_symbol: column and gallery label of latent j (``z`` -> ``z3``, ``mu`` -> ``mu3``).
        side_label: which latents these are, in words (e.g. "target latents z = g(y) (recipe
            side)"), put in every figure title.

    Returns:
        Paths written: ``<prefix>food_factors_heatmap.png`` then
        ``<prefix>latent_<j>_extremes.png``.
    """
    z = np.asarray(latents, np.float64)
    os.makedirs(out_dir, exist_ok=True)
    lex = alignment.get("lexicon") or {}
    matched = list(zip(lex.get("factors", []), lex.get("latents", []), strict=True))
    heading = "Spearman correlation of latents with food factors"
    paths = [
        factor_heatmap(
            alignment["spearman"],
            alignment["names"],
            os.path.join(out_dir, f"{prefix}food_factors_heatmap.png"),
            latent_names=[f"{latent_symbol}{j}" for j in range(z.shape[1])],
            matched=matched,
            title=f"{heading}:\n{side_label}" if side_label else heading,
        )
    ]
    if latent_indices is None:
        latent_indices = range(z.shape[1]) if z.shape[1] <= 16 else [j for _, j in matched]
    names = alignment["names"]
    for j in latent_indices:
        tag = ", ".join(names[f] for f, lj in matched if lj == j)
        label = f"{latent_symbol}{j}" + (f" (~{tag})" if tag else "")
        paths.append(
            extremes_gallery(
                z[:, j],
                images,
                titles,
                os.path.join(out_dir, f"{prefix}latent_{j}_extremes.png"),
                n=n,
                name=label,
                side_label=side_label,
            )  # fmt: skip
        )
    return paths
