"""iIVAE on Recipe1M (docs/methods.md §1, docs/recipe1m.md): heads on frozen tower features.

Pipeline of `build_ivae_recipe(config)`:

1. **Features per split** (`config.data.train_split`, `config.data.eval_split`) from
   `jaxmr.data.recipe_features`: the frozen text and image towers run once over a Recipe1M
   source (`config.data.source`: `root`, `tfds`, `fixture`, or precomputed `features`) and
   the features are cached under `config.data.cache_dir`.
2. **Head inputs [R]**: the query modality x (`config.model.query`: `image` or `recipe`)
   conditions the prior; it is standardised with train-split statistics. The target
   modality y is projected to `config.model.target_dim` = D dims by a fixed PCA fitted on
   the train split and whitened (unit variance per component), because the invertible
   embedding g needs a moderate dimension and a *learned* projection in front of an exact
   likelihood would let the model shrink the data to raise its density; with
   `config.model.target_basis="cca"` (default) the whitened y is then rotated onto the
   directions best predicted from x (`cca_rotation`), so the scored coordinates start on
   what the two modalities share.
3. **Heads**: `IVAEModel` and the losses of `jaxmr.tasks.ivae.synthetic` (`implicit`: invertible
   residual flow g with the Jacobian penalty; D > d uses the full-dimensional flow,
   candidate (i); `isometry`: the documented ablation). Nothing is copied.
4. **Evaluators** on the eval split (`jaxmr.tasks.ivae.recipe_evaluators`): the im2recipe
   protocol (cosine of mu(x) and g(y)_{:d}, and the likelihood score log p(g(y) | x)) and the
   food-factor alignment of both sides, the target latents g(y)_{:d} and the prior mean
   mu(x), with heatmaps and extremes galleries.

Fine-tuning the towers is not implemented: towers are frozen and encoded once.
"""

from __future__ import annotations

import dataclasses
import logging

import jax.numpy as jnp
import numpy as np

from jaxmr.data.recipe_features import (
    SOURCES,
    RecipeFeatures,
    gallery_images,
    load_recipe_features,
)
from jaxmr.tasks.ivae import synthetic as ivae_lib
from jaxmr.tasks.ivae.recipe_evaluators import FoodFactorEvaluator, RetrievalEvaluator
from jaxmr.tasks.ivae.synthetic import implicit_loss, isometry_loss, ivae_params, ivae_task
from jaxmr.train.task import Task

logger = logging.getLogger(__name__)

QUERIES = ("image", "recipe")
BASES = ("pca", "cca")  # config.model.target_basis
VARIANTS = ("implicit", "isometry")  # variants that embed y alone (needed for retrieval)


# --------------------------------------------------------------------------- head inputs


@dataclasses.dataclass(frozen=True)
class HeadInputs:
    """Fixed maps from tower features to the heads' inputs, fitted on the train split [R].

    x = (query - mean) / std per dimension; y = ((target - mean) @ components) / scales: PCA
    to D components, each scaled to unit variance on the train split (whitening).

    `basis="cca"` then rotates the whitened y by the orthogonal R whose columns are the
    directions of y best predicted from x, most predictable first (`cca_rotation`): the
    canonical directions of y against x, under a ridge. R is orthogonal, so y stays whitened
    and the map stays fixed (no likelihood is gained by it); it only chooses which directions
    of the target the flow's coordinates start on. `basis="pca"` keeps the principal axes.
    """

    query: str
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_proj: np.ndarray  # [D_target_features, D], whitening included

    @classmethod
    def fit(
        cls,
        train: RecipeFeatures,
        query: str,
        target_dim: int,
        *,
        basis: str = "pca",
        ridge: float = 1.0,
    ) -> HeadInputs:
        if basis not in BASES:
            raise ValueError(f"config.model.target_basis must be one of {BASES}, got {basis!r}")
        if not ridge >= 0:
            raise ValueError(f"config.model.target_ridge must be >= 0, got {ridge}")
        x, y = _modalities(train, query)
        x_mean, x_std = x.mean(0), x.std(0)
        y_mean = y.mean(0)
        if target_dim <= 0:  # standardise only
            proj = np.diag(1.0 / np.maximum(y.std(0), 1e-6))
        else:
            if target_dim > min(y.shape):
                raise ValueError(
                    f"config.model.target_dim={target_dim} exceeds min(train examples, target "
                    f"feature dim) = {min(y.shape)}"
                )
            _, sv, vt = np.linalg.svd(y - y_mean, full_matrices=False)
            scale = np.maximum(sv[:target_dim] / np.sqrt(max(len(y) - 1, 1)), 1e-6)
            proj = vt[:target_dim].T / scale
        x_std = np.maximum(x_std, 1e-6)
        if basis == "cca":
            rows = slice(0, 20000)  # cca_rotation's max_rows, sliced before the copies
            xs, ys = (x[rows] - x_mean) / x_std, (y[rows] - y_mean) @ proj
            proj = proj @ cca_rotation(xs, ys, ridge=ridge)
        return cls(
            query,
            x_mean.astype(np.float32),
            x_std.astype(np.float32),
            y_mean.astype(np.float32),
            proj.astype(np.float32),
        )

    def __call__(self, feats: RecipeFeatures) -> dict[str, np.ndarray]:
        x, y = _modalities(feats, self.query)
        return {
            "x": ((x - self.x_mean) / self.x_std).astype(np.float32),
            "y": ((y - self.y_mean) @ self.y_proj).astype(np.float32),
        }


def cca_rotation(
    x: np.ndarray, y: np.ndarray, *, ridge: float = 1.0, max_rows: int = 20000
) -> np.ndarray:
    """Orthogonal `[D, D]` rotation of whitened targets onto the directions best predicted
    from the query, most predictable first.

    Ridge regression y ~ x (penalty `ridge` * N on standardised x) gives predictions y_hat;
    the eigenvectors of Cov(y_hat), by decreasing eigenvalue (the share of each direction's
    unit variance that x predicts), are the columns. For whitened y these are the canonical
    directions of y against x (regularised canonical correlation analysis).

    Args:
      x: `[N, Dx]` standardised query features; y: `[N, D]` whitened targets.
      ridge: ridge strength relative to N.
      max_rows: fit on the first `max_rows` rows only (bounds memory on the full Recipe1M:
        2048-d image features of ~280k recipes would be 4.6 GB in float64).

    Returns:
      `[D, D]` orthogonal matrix (columns: directions).
    """
    x = x[:max_rows].astype(np.float64)
    y = y[:max_rows].astype(np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    n = len(x)
    beta = np.linalg.solve(x.T @ x + ridge * n * np.eye(x.shape[1]), x.T @ y)
    pred = x @ beta
    vals, vecs = np.linalg.eigh(pred.T @ pred / max(n - 1, 1))
    return vecs[:, np.argsort(vals)[::-1]]


def _modalities(feats: RecipeFeatures, query: str) -> tuple[np.ndarray, np.ndarray]:
    """(query features x, target features y) for `config.model.query`."""
    return (feats.image, feats.recipe) if query == "image" else (feats.recipe, feats.image)


# --------------------------------------------------------------------------- task


def _check(cfg) -> None:
    d, m = cfg.data, cfg.model
    if d.source not in SOURCES:
        raise ValueError(f"config.data.source must be one of {SOURCES}, got {d.source!r}")
    if d.source == "root" and not d.root:
        raise ValueError(
            "config.data.root is empty: set --config.data.root to your Recipe1M folder "
            "(docs/recipe1m.md §1), or use --config=configs/ivae_recipe.py:smoke for the fixture"
        )
    if d.source == "tfds" and not d.tfds_dir:
        raise ValueError("config.data.tfds_dir is empty (the data_dir given to build_recipe1m)")
    if d.source == "features" and "{split}" not in d.features_path:
        raise ValueError(
            "config.data.features_path must contain '{split}' (one file per split), got "
            f"{d.features_path!r}"
        )
    if m.query not in QUERIES:
        raise ValueError(f"config.model.query must be one of {QUERIES}, got {m.query!r}")
    if m.variant not in VARIANTS:
        raise ValueError(
            f"config.model.variant must be one of {VARIANTS} for Recipe1M (retrieval needs an "
            f"embedding of the target alone), got {m.variant!r}"
        )
    modes = ivae_lib.TARGET_MODES  # the D > d candidates are the iIVAE task's
    if m.target_mode not in modes:
        raise ValueError(f"config.model.target_mode must be one of {modes}, got {m.target_mode!r}")


def build_ivae_recipe(cfg) -> Task:
    _check(cfg)
    splits = load_recipe_features(cfg.data, cfg.model)
    train, held = splits[cfg.data.train_split], splits[cfg.data.eval_split]
    m = cfg.model
    inputs = HeadInputs.fit(
        train, m.query, int(m.target_dim), basis=m.target_basis, ridge=float(m.target_ridge)
    )
    arrays, eval_arrays = inputs(train), inputs(held)
    x_dim, y_dim = arrays["x"].shape[1], arrays["y"].shape[1]
    d = int(m.latent_dim)
    if d > y_dim:
        raise ValueError(f"config.model.latent_dim={d} exceeds the target dimension D={y_dim}")
    loss_cfg = cfg.loss
    beta, gamma = float(loss_cfg.beta), float(loss_cfg.gamma)

    init_fn, bind = ivae_params(cfg, x_dim, y_dim)

    def loss_fn(params, batch, ctx):
        key = ctx.key
        model = bind(params)
        if m.variant == "implicit":
            return implicit_loss(model, batch["x"], batch["y"], key, d, loss_cfg, beta, gamma)
        return isometry_loss(model, batch["x"], batch["y"], key, loss_cfg, gamma)

    def predict_fn(params, batch):
        """z = g(y)_{:d} (target latents) and the prior N(mean, exp(logvar)) given x."""
        model = bind(params)
        z = model.flow(batch["y"])[..., :d] if m.variant == "implicit" else model.embed(batch["y"])
        mean, logvar = model.prior(batch["x"])
        return {"z": z, "mean": mean, "logvar": jnp.broadcast_to(logvar, mean.shape)}

    evaluators = []
    ev_cfg = cfg.evals
    if ev_cfg.retrieval.every_steps >= 0:
        r = ev_cfg.retrieval
        evaluators.append(
            RetrievalEvaluator(
                "retrieval",
                predict_fn,
                eval_arrays,
                query=m.query,
                every_steps=r.every_steps,
                bag_sizes=tuple(r.bag_sizes),
                n_bags=r.n_bags,
                seed=r.seed,
                scores=tuple(r.scores),
            )
        )
    if ev_cfg.food.every_steps >= 0 and held.factors.shape[1]:
        f = ev_cfg.food
        evaluators.append(
            FoodFactorEvaluator(
                "food",
                predict_fn,
                eval_arrays,
                factors=held.factors,
                factor_names=held.factor_names,
                titles=list(held.titles),
                images=gallery_images(cfg.data, cfg.data.eval_split, held.image_refs),
                query=m.query,
                every_steps=f.every_steps,
                max_examples=f.max_examples,
                gallery_n=f.gallery_n,
                seed=f.seed,
            )
        )
    elif ev_cfg.food.every_steps >= 0:
        logger.warning(
            "no food factors for split %s (features without config.data.root)",
            cfg.data.eval_split,
        )
    target = "recipe" if m.query == "image" else "image"
    return ivae_task(
        "ivae_recipe",
        cfg,
        init_fn,
        bind,
        loss_fn,
        predict_fn,
        arrays,
        evaluators,
        variant=f"{m.variant} {m.query}->{target}",
        num_eval_examples=len(held),
        head_inputs=inputs,
    )
