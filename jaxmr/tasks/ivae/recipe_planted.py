"""Planted-factor check of the Recipe1M task: the food evaluator at initialisation and after
training, on the generated fixture whose greenness, wateriness and savoriness are known.

`train_and_score(config)` builds the `ivae_recipe` task, scores the initial parameters with
the task's `FoodFactorEvaluator` (both sides: target latents z = g(y) and prior mean mu(x)),
trains `config.total_steps` steps in memory (no checkpoints, no periodic evaluation) and
scores again. `planted_rhos` picks the planted-factor columns. Used by
tests/tasks/test_ivae_recipe.py and scripts/recipe_planted_study.py (docs/recipe1m.md §9).
"""

from __future__ import annotations

import time
from typing import Any

import jax

from jaxmr.data.arrays import ArrayLoader
from jaxmr.data.recipe_features import PLANTED
from jaxmr.tasks import TASKS
from jaxmr.tasks.ivae.recipe_evaluators import SIDES, FoodFactorEvaluator
from jaxmr.train import mesh as mesh_lib
from jaxmr.train import step as step_lib


def planted_rhos(scalars: dict[str, float]) -> dict[str, dict[str, float]]:
    """{side: {factor: best |Spearman| over latents}} for the planted factors, from the
    scalars of `FoodFactorEvaluator.run`."""
    return {
        side: {
            name.removeprefix("planted_"): scalars[f"{side}/best_abs_rho/{name}"]
            for name in PLANTED
        }
        for side in SIDES
    }


def train_and_score(config) -> dict[str, Any]:
    """Food-evaluator scalars at initialisation and after `config.total_steps` steps.

    Args:
      config: an `ivae_recipe` config on the fixture source (`config.data.source="fixture"`),
        with the food evaluator on (`config.evals.food.every_steps >= 0`).

    Returns:
      {"init": scalars, "trained": scalars, "train_seconds": float, "final_loss": float};
      scalars as `FoodFactorEvaluator.run` gives them (`target/...`, `prior_mean/...`).
    """
    if config.data.source != "fixture":
        raise ValueError(
            f"planted factors exist only on the fixture source, got {config.data.source!r}"
        )
    task = TASKS[config.task](config)
    (food,) = [e for e in task.evaluators if isinstance(e, FoodFactorEvaluator)]
    mesh = mesh_lib.make_data_mesh(1)
    init_key, step_key = jax.random.split(jax.random.key(config.seed))
    state = step_lib.init_state(task, init_key, mesh)
    before = food.run(state.params)
    shardings = jax.tree.map(lambda s: s.sharding, step_lib.abstract_state(task, mesh))
    train_step = step_lib.jit_train_step(task, mesh, shardings)
    loader = ArrayLoader(task.train_arrays, batch_size=config.batch_size, seed=config.seed)
    t0 = time.perf_counter()
    metrics = {}
    for s in range(config.total_steps):
        state, metrics = train_step(state, mesh_lib.place_batch(loader.batch(s), mesh), step_key)
    loss = float(metrics["train/loss"]) if "train/loss" in metrics else float("nan")
    return {
        "init": before,
        "trained": food.run(state.params),
        "train_seconds": time.perf_counter() - t0,
        "final_loss": loss,
    }
