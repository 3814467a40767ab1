"""The MCC evaluator of iIVAE tasks with known factors (synthetic, .npz with `s`, shapes)."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jaxmr.metrics.mcc import mcc_report
from jaxmr.train.evaluators import predict_all
from jaxmr.train.task import Evaluator
from jaxmr.viz.mcc import plot_correlation_matrix, plot_matched_scatter

MCC_KEYS = ("mcc_strong", "mcc_weak", "mcc_strong_spearman", "mcc_weak_spearman")


class MCCEvaluator(Evaluator):
    """Strong and weak MCC (Pearson and Spearman) between learned latents and true factors.

    `max_examples` > 0 scores a fixed random subset (drawn from `seed`) to bound the cost of the
    Spearman ranks and CCA on large datasets.
    """

    def __init__(
        self, name, predict_fn, arrays, *, every_steps: int, max_examples: int = 0, seed: int = 0
    ):
        self.name = name
        self.every_steps = every_steps
        self.seed = seed
        n = len(arrays["s"])
        idx = np.arange(n)
        if 0 < max_examples < n:
            idx = np.sort(np.random.default_rng(seed).choice(n, max_examples, replace=False))
        self.arrays = {k: v[idx] for k, v in arrays.items()}
        self._predict = jax.jit(predict_fn)
        self.predict_fn = predict_fn

    def latents(self, params) -> np.ndarray:
        return predict_all(self._predict, params, self.arrays)

    def report(self, params) -> dict:
        """Full report (with the correlation matrix and matching) for eval.py figures."""
        z = self.latents(params)
        if not np.all(np.isfinite(z)):
            raise FloatingPointError("non-finite latents in MCC evaluation")
        return mcc_report(self.arrays["s"], z, seed=self.seed) | {"z": z, "s": self.arrays["s"]}

    def run(self, params) -> dict[str, float]:
        rep = self.report(params)
        return {k: float(rep[k]) for k in MCC_KEYS}

    def evaluate(self, params, out_dir: str) -> tuple[dict[str, Any], list[str]]:
        """MCC values (unprefixed, as eval.py has always written them), the correlation matrix,
        the matching, and two figures: the correlation matrix and matched scatter plots."""
        rep = self.report(params)
        metrics: dict[str, Any] = {k: float(rep[k]) for k in MCC_KEYS}
        metrics["matched_corr"] = np.asarray(rep["matched_corr"]).tolist()
        metrics["matching"] = np.asarray(rep["matching"]).tolist()
        metrics["corr"] = np.asarray(rep["corr"]).tolist()
        metrics["num_examples"] = int(len(rep["z"]))
        figures = []
        if jax.process_index() == 0:
            figures.append(
                plot_correlation_matrix(
                    rep["corr"],
                    rep["matching"],
                    os.path.join(out_dir, "correlation.png"),
                    title=f"MCC {rep['mcc_strong']:.3f}",
                )
            )
            figures.append(
                plot_matched_scatter(
                    rep["s"], rep["z"], rep["matching"], os.path.join(out_dir, "scatter.png")
                )
            )
        return metrics, figures
