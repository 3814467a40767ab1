"""Recipe1M evaluators: im2recipe retrieval and food-factor alignment.

Both follow the evaluator contract of `jaxmr.train.task.Evaluator` (`name`, `every_steps`,
`run(params) -> dict[str, float]`, logged during training) and add
`evaluate(params, out_dir) -> (metrics, figure_paths)`, which `eval.py` calls to write
`eval/metrics.json` and the figures.

They read the jittable `predict_fn(params, {"x", "y"})` of the `ivae_recipe` task, which
returns `z = g(y)_{:d}` (target latents) and the conditional prior `mean`, `logvar` given x.
The food evaluator scores both (`SIDES`: `target` and `prior_mean`) and says which is which
in its keys, files and figure titles.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxmr.data.food_factors import food_factor_alignment
from jaxmr.metrics.likelihood_retrieval import gaussian_score_features, im2recipe_protocol_dot
from jaxmr.metrics.retrieval import im2recipe_protocol
from jaxmr.train.evaluators import predict_arrays
from jaxmr.train.task import Evaluator

logger = logging.getLogger(__name__)

SCORES = ("cosine", "loglik")


def bag_label(bag_size: int) -> str:
    """`1k` for 1000, `10k` for 10000, else `bag<N>`."""
    return f"{bag_size // 1000}k" if bag_size % 1000 == 0 else f"bag{bag_size}"


class RetrievalEvaluator(Evaluator):
    """The im2recipe protocol on the eval split, for one or both scores.

    Scores [R]: `cosine` of the prior mean mu(x) of the query-modality item and the target
    latent z = g(y)_{:d} (the protocol's cosine similarity); `loglik`, the model's own score
    log p(g(y) | x) = log N(z; mu(x), diag sigma^2(x)) (see
    `jaxmr.metrics.likelihood_retrieval`). Both rank the same bags. Directions are named by
    modality whatever the query: `i2r` ranks recipes for each image, `r2i` images for
    each recipe.

    Bag sizes larger than the eval split are replaced by the whole split (one bag of all N
    pairs, key `bag<N>`), with a warning and in `evaluate`'s `protocol`, so a small split is
    still evaluated rather than silently skipped.
    Keys: `<score>/<bag label>/<i2r|r2i>/<R@1|R@5|R@10|medR>`, e.g. `cosine/1k/i2r/R@1`.
    """

    def __init__(
        self,
        name: str,
        predict_fn: Callable,
        arrays: Mapping[str, np.ndarray],
        *,
        query: str,
        every_steps: int,
        bag_sizes: Sequence[int] = (1000, 10000),
        n_bags: int = 10,
        seed: int = 0,
        scores: Sequence[str] = SCORES,
    ):
        bad = [s for s in scores if s not in SCORES]
        if bad or not scores:
            raise ValueError(
                f"retrieval scores must be a non-empty subset of {SCORES}, got {scores}"
            )
        if query not in ("image", "recipe"):
            raise ValueError(f"query must be 'image' or 'recipe', got {query!r}")
        self.name = name
        self.every_steps = every_steps
        self.arrays = {k: arrays[k] for k in ("x", "y")}
        self.query = query
        self.n = len(self.arrays["x"])
        if self.n < 2:
            raise ValueError(f"retrieval needs at least 2 eval pairs, got {self.n}")
        self.requested = [int(b) for b in bag_sizes]
        self.adapted = {b: self.n for b in self.requested if b > self.n}
        self.bag_sizes = list(dict.fromkeys(min(b, self.n) for b in self.requested))
        if self.adapted:
            logger.warning(
                "retrieval: the eval split has %d pairs, fewer than the bag size(s) %s; "
                "ranking within one bag of all %d pairs instead (keys %s/...)",
                self.n,
                ", ".join(str(b) for b in self.adapted),
                self.n,
                bag_label(self.n),
            )
        self.n_bags = int(n_bags)
        self.seed = int(seed)
        self.scores = tuple(scores)
        self._predict = jax.jit(predict_fn)

    def embeddings(self, params) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """{score: (image-side, recipe-side) features} for the eval split."""
        out = predict_arrays(self._predict, params, self.arrays)
        for k, v in out.items():
            if not np.all(np.isfinite(v)):
                raise FloatingPointError(f"non-finite {k} in retrieval evaluation")
        feats = {}
        if "cosine" in self.scores:
            q, t = out["mean"], out["z"]
            feats["cosine"] = (q, t) if self.query == "image" else (t, q)
        if "loglik" in self.scores:
            q, t = gaussian_score_features(out["mean"], out["logvar"], out["z"])
            feats["loglik"] = (q, t) if self.query == "image" else (t, q)
        return feats

    def metrics(self, params, *, with_std: bool = True) -> dict[str, float]:
        out = {}
        for score, (img, rec) in self.embeddings(params).items():
            protocol = im2recipe_protocol if score == "cosine" else im2recipe_protocol_dot
            for bag in self.bag_sizes:
                # Bags of the whole split are all the same bag: draw it once.
                n_bags = 1 if bag == self.n else self.n_bags
                res = protocol(img, rec, bag_size=bag, n_bags=n_bags, seed=self.seed)
                for k, v in res.items():
                    if k in ("bag_size", "n_bags") or (k.endswith("_std") and not with_std):
                        continue
                    out[f"{score}/{bag_label(bag)}/{k}"] = float(v)
        return out

    def run(self, params) -> dict[str, float]:
        return self.metrics(params, with_std=False)

    def evaluate(self, params, out_dir: str) -> tuple[dict[str, Any], list[str]]:
        del out_dir  # no figures
        res = {f"{self.name}/{k}": v for k, v in self.metrics(params).items()}
        res[f"{self.name}/protocol"] = {
            "bag_sizes": self.bag_sizes,
            "bag_sizes_requested": self.requested,
            # requested size -> the split size used instead (one bag of every pair)
            "bag_sizes_adapted_to_split": {str(b): n for b, n in self.adapted.items()},
            "n_bags": self.n_bags,
            "seed": self.seed,
            "num_pairs": self.n,
            "query": self.query,
            "scores": list(self.scores),
        }
        return res, []


class _Rows(Sequence):
    """A read-only view of some rows of a (possibly lazy) sequence."""

    def __init__(self, seq: Sequence, rows: np.ndarray):
        self.seq, self.rows = seq, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.seq[int(self.rows[i])]


SIDES = ("target", "prior_mean")


def side_labels(query: str) -> dict[str, str]:
    """What each side of the food evaluator is, in words, for `config.model.query`."""
    if query not in ("image", "recipe"):
        raise ValueError(f"query must be 'image' or 'recipe', got {query!r}")
    target = "recipe" if query == "image" else "image"
    return {
        "target": f"target latents z = g(y) ({target} side)",
        "prior_mean": f"prior mean mu(x) ({query} side)",
    }


class FoodFactorEvaluator(Evaluator):
    """Spearman correlation of every latent with every food factor, MCC after matching,
    and (in `evaluate`) the heatmaps and per-latent extremes galleries, for BOTH sides [R]:

    - `target`: z = g(y)_{:d}, the identifiable latents of the target modality (the recipe
      text when the query is the image);
    - `prior_mean`: mu(x), the prior mean given the query-modality item (the image when the
      query is the image), the same d coordinates predicted from the other side.

    Keys are prefixed by the side (`target/best_abs_rho/greenness`,
    `prior_mean/lexicon/mcc`, ...); figure files and titles name it. Factors are the lexicon
    proxies (savoriness, wateriness, greenness), the nutrients when the nutrition file is
    present, and any extra columns (e.g. the fixture's planted factors), which are correlated
    but not matched.
    """

    def __init__(
        self,
        name: str,
        predict_fn: Callable,
        arrays: Mapping[str, np.ndarray],
        *,
        factors: np.ndarray,
        factor_names: Sequence[str],
        titles: Sequence[str],
        images: Sequence[Any],
        query: str,
        every_steps: int,
        max_examples: int = 0,
        gallery_n: int = 6,
        seed: int = 0,
    ):
        self.labels = side_labels(query)
        n = len(arrays["x"])
        if not (len(factors) == len(titles) == len(images) == n):
            raise ValueError(
                f"factors, titles and images need one row per eval item ({n}); got "
                f"{len(factors)}, {len(titles)}, {len(images)}"
            )
        rows = np.arange(n)
        if 0 < max_examples < n:
            rows = np.sort(np.random.default_rng(seed).choice(n, max_examples, replace=False))
        self.name = name
        self.every_steps = every_steps
        self.arrays = {k: arrays[k][rows] for k in ("x", "y")}
        self.factors = np.asarray(factors, np.float64)[rows]
        self.factor_names = list(factor_names)
        self.titles = [str(titles[i]) for i in rows]
        self.images = _Rows(images, rows)
        self.gallery_n = gallery_n
        self.seed = seed
        self._predict = jax.jit(predict_fn)

    def latent_values(self, params) -> dict[str, np.ndarray]:
        """{`target`: z [N, d], `prior_mean`: mu [N, d]} on the evaluated rows."""
        out = predict_arrays(self._predict, params, self.arrays)
        sides = {"target": np.asarray(out["z"]), "prior_mean": np.asarray(out["mean"])}
        for side, z in sides.items():
            if not np.all(np.isfinite(z)):
                raise FloatingPointError(f"non-finite {side} latents in food-factor evaluation")
        return sides

    def alignment(self, params) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """{side: (latents, `food_factor_alignment` output)} for both sides."""
        return {
            side: (z, food_factor_alignment(z, self.factors, self.factor_names, seed=self.seed))
            for side, z in self.latent_values(params).items()
        }

    @staticmethod
    def _scalars(al: dict[str, Any]) -> dict[str, float]:
        out = {}
        for group in ("lexicon", "nutrition"):
            if al[group] is not None:
                out[f"{group}/mcc"] = float(al[group]["mcc"])
        for i, name in enumerate(al["names"]):
            row = al["spearman"][i]
            if np.any(np.isfinite(row)):
                out[f"best_abs_rho/{name}"] = float(np.nanmax(np.abs(row)))
        return out

    def run(self, params) -> dict[str, float]:
        return {
            f"{side}/{k}": v
            for side, (_, al) in self.alignment(params).items()
            for k, v in self._scalars(al).items()
        }

    def _side_results(self, side: str, al: dict[str, Any]) -> dict[str, Any]:
        res: dict[str, Any] = {f"{side}/{k}": v for k, v in self._scalars(al).items()}
        matched = {}
        for group in ("lexicon", "nutrition"):
            g = al[group]
            if g is None:
                continue
            res[f"{side}/{group}"] = {
                "mcc": float(g["mcc"]),
                "mcc_weak": float(g["mcc_weak"]),
                "n": int(g["n"]),
            }
            for f, j, rho in zip(g["factors"], g["latents"], g["matched_spearman"], strict=True):
                matched[al["names"][f]] = (int(j), float(rho))
        table = {}
        for i, name in enumerate(al["names"]):
            row = al["spearman"][i]
            table[name] = {
                "spearman": [None if not np.isfinite(v) else float(v) for v in row],
                "best_latent": int(al["best_latent"][i]),
                "matched_latent": matched.get(name, (None, None))[0],
                "matched_spearman": matched.get(name, (None, None))[1],
            }
        res[f"{side}/table"] = table
        return res

    def evaluate(self, params, out_dir: str) -> tuple[dict[str, Any], list[str]]:
        from jaxmr.viz.food import write_food_figures  # noqa: PLC0415 (matplotlib)

        res: dict[str, Any] = {}
        figures: list[str] = []
        for side, (z, al) in self.alignment(params).items():
            res.update({f"{self.name}/{k}": v for k, v in self._side_results(side, al).items()})
            res[f"{self.name}/num_examples"] = len(z)
            if jax.process_index() == 0:
                figures += write_food_figures(
                    z,
                    al,
                    self.images,
                    self.titles,
                    os.path.join(out_dir, "food"),
                    n=self.gallery_n,
                    prefix=f"{side}_",
                    latent_symbol="z" if side == "target" else "mu",
                    side_label=self.labels[side],
                )
        res[f"{self.name}/sides"] = dict(self.labels)
        return res, figures
