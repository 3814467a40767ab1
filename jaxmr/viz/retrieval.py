"""Figures for noisy-correspondence retrieval: clean-probability histograms, 2-D views of the
MII and MEI codes coloured by known factors, soft targets against true positives, and the
held-out MI between MII and MEI codes over training."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_clean_probability(probs: dict[str, np.ndarray], is_noisy: np.ndarray, path: str) -> str:
    """Histogram of each network's clean probability for truly clean and truly noisy pairs."""
    fig, axes = plt.subplots(1, len(probs), figsize=(4.5 * len(probs), 3.2), squeeze=False)
    bins = np.linspace(0, 1, 26)
    for ax, (net, p) in zip(axes[0], probs.items(), strict=True):
        ax.hist(p[~is_noisy], bins=bins, alpha=0.6, label="clean pairs", density=True)
        ax.hist(p[is_noisy], bins=bins, alpha=0.6, label="noisy pairs", density=True)
        ax.set_xlabel("GMM clean probability")
        ax.set_title(net)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pca2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def plot_code_embeddings(
    codes: dict[str, np.ndarray], colours: dict[str, np.ndarray], path: str
) -> str:
    """A row per code (e.g. image MII, image MEI), a column per colouring factor; each panel the
    code's first two principal components, points coloured by the factor."""
    fig, axes = plt.subplots(
        len(codes), len(colours), figsize=(3.6 * len(colours), 3.3 * len(codes)), squeeze=False
    )
    for r, (cname, c) in enumerate(codes.items()):
        xy = _pca2(c)
        for k, (fname, f) in enumerate(colours.items()):
            ax = axes[r][k]
            ax.scatter(xy[:, 0], xy[:, 1], c=f, s=4, cmap="tab10" if f.dtype.kind in "iu" else None)
            ax.set_title(f"{cname} coloured by {fname}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_soft_targets(targets: np.ndarray, positives: np.ndarray, path: str) -> str:
    """The soft-target matrix of a batch beside its true many-to-many positives."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    axes[0].imshow(targets, cmap="viridis")
    axes[0].set_title("soft targets Y (rows: images, cols: captions)", fontsize=9)
    axes[1].imshow(positives, cmap="gray_r")
    axes[1].set_title("true positives (same shared factors)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metric_over_training(rows: list[dict], keys: list[str], path: str, *, ylabel: str) -> str:
    """Logged values of `keys` against the step (rows of metrics.jsonl)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        if pts:
            s, v = zip(*pts, strict=True)
            ax.plot(s, v, marker="o", label=k.split("/", 1)[-1])
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
