"""The rendered-shapes benchmark as flat paired arrays for the iIVAE family (docs/ivae.md).

`make_paired_shapes` gives `[N, S, S, 3]` uint8 images of a query rendering `x` and a target
rendering `y` that share a documented subset of six known factors (docs/shapes.md). The flows,
MLP priors and encoders of `jaxmr.tasks.ivae` act on vectors, so each modality goes through a
fixed linear feature map: PCA fitted on that modality's training images (pixels scaled to
[0, 1]), keeping the top `dim` components, each scaled to unit variance [R]. Why PCA rather
than flattened pixels or a trained conv net:

- the invertible residual flow needs a target of modest dimension (its exact log det is a
  D x D determinant per block and example); 3,072 pixels would need the estimators
  everywhere, while 16-32 principal components keep the exact terms cheap;
- a fixed, linear, data-independent-of-the-model map is the same for every model, so the
  comparison is between objectives, not between feature extractors; a trained backbone would
  add its own inductive bias (docs/methods.md §1 admits frozen or trained backbones);
- unit-variance components put every model's inputs on the same scale.

The true factors returned in `s` are the SHARED factors of the pair (columns of `s_y` flagged
in `shared`, equal to those of `s`); `s_exclusive` holds the target's own non-shared factors,
to measure leakage. The shape index is categorical (4 values); metrics treat it as in
docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from jaxmr.data.shapes import DEFAULT_SHARED, FACTOR_NAMES, make_paired_shapes


def pca_features(
    images: np.ndarray, *, dim: int, fit_rows: int = 5000, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Top-`dim` principal components of flattened images, scaled to unit variance.

    The basis comes from a randomized SVD (Halko et al. 2011: a Gaussian sketch with
    `dim + 16` columns, 4 power iterations with re-orthonormalisation) of `fit_rows` random
    rows, which takes 1-2 s where a full SVD of 5,000 x 3,072 took 60-77 s on a shared
    2-core CPU; on the shapes images all 32 kept components have |cosine| >= 0.998 with the
    exact ones.

    Args:
      images: `[N, ...]` uint8 (scaled by 1/255) or float array.
      dim: number of components kept.
      fit_rows: the basis is fitted on this many random rows (all if fewer); the projection
        is applied to every row.
      seed: seed of the fitting subset and of the sketch.

    Returns:
      (`[N, dim]` float32 features, dict with `mean` `[P]`, `components` `[dim, P]`,
      `scale` `[dim]` so that features = (flat - mean) @ components.T / scale).
    """
    flat = images.reshape(len(images), -1).astype(np.float32)
    if images.dtype == np.uint8:
        flat /= 255.0
    if not 1 <= dim <= min(flat.shape):
        raise ValueError(f"PCA dim must be in [1, {min(flat.shape)}], got {dim}")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(flat), min(fit_rows, len(flat)), replace=False)
    mean = flat[rows].mean(0)
    centred = (flat[rows] - mean).astype(np.float64)
    components = _top_right_singular_vectors(centred, dim, rng)
    feats = (flat - mean) @ components.T.astype(np.float32)
    scale = feats.std(0) + 1e-8
    return (feats / scale).astype(np.float32), {
        "mean": mean,
        "components": components.astype(np.float32),
        "scale": scale,
    }


def pca_images(features: np.ndarray, basis: dict[str, np.ndarray], *, size: int) -> np.ndarray:
    """The inverse of `pca_features` on its span: `[..., dim]` features to `[..., size, size,
    3]` float images in [0, 1] (flat = features * scale @ components + mean, clipped). Exact
    for the projection of an image onto the kept components; the rest of the image is lost.
    """
    f = np.asarray(features, np.float32)
    dim = basis["components"].shape[0]
    if f.shape[-1] != dim:
        raise ValueError(f"features have {f.shape[-1]} components, the PCA basis has {dim}")
    flat = (f * basis["scale"]) @ basis["components"] + basis["mean"]
    if flat.shape[-1] != size * size * 3:
        raise ValueError(f"PCA basis has {flat.shape[-1]} pixels, not {size} x {size} x 3")
    return np.clip(flat, 0.0, 1.0).reshape(*f.shape[:-1], size, size, 3)


def _top_right_singular_vectors(a: np.ndarray, k: int, rng, *, oversample=16, iters=4):
    """`[k, P]` top right singular vectors of `a` `[n, P]` by a randomized range finder."""
    width = min(k + oversample, min(a.shape))
    q = np.linalg.qr(a @ rng.standard_normal((a.shape[1], width)))[0]
    for _ in range(iters):
        q = np.linalg.qr(a.T @ q)[0]
        q = np.linalg.qr(a @ q)[0]
    _, _, vt = np.linalg.svd(q.T @ a, full_matrices=False)
    return vt[:k]


def shapes_arrays(
    n: int,
    *,
    seed: int = 0,
    size: int = 32,
    shared: Iterable[str] = DEFAULT_SHARED,
    noise_std: float = 0.05,
    query_dim: int = 32,
    target_dim: int = 16,
) -> dict[str, np.ndarray]:
    """Paired PCA features of the shapes benchmark for the iIVAE task.

    Returns:
      dict with float32 `x` `[n, query_dim]` (query features), `y` `[n, target_dim]` (target
      features), `s` `[n, k]` the k shared factors, `s_exclusive` `[n, 6 - k]` the target's
      own factors, `factor_names` / `exclusive_names` (str arrays), and the target's PCA
      basis `y_pca_mean`, `y_pca_components`, `y_pca_scale` (see `pca_features`; `pca_images`
      maps target features back to pixels).
    """
    data = make_paired_shapes(n, seed=seed, size=size, shared=shared, noise_std=noise_std)
    mask = data["shared"]
    x, _ = pca_features(data["x"], dim=query_dim, seed=seed)
    y, y_basis = pca_features(data["y"], dim=target_dim, seed=seed + 1)
    names = np.asarray(FACTOR_NAMES)
    return {
        "x": x,
        "y": y,
        "s": data["s_y"][:, mask].astype(np.float32),
        "s_exclusive": data["s_y"][:, ~mask].astype(np.float32),
        "factor_names": names[mask],
        "exclusive_names": names[~mask],
    } | {f"y_pca_{k}": v for k, v in y_basis.items()}
