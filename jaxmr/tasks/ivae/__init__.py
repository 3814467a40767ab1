"""iIVAE and its explicit-decoder baselines: the synthetic/.npz/shapes task, the Recipe1M task
and their evaluators."""

from jaxmr.tasks.ivae.evaluators import MCCEvaluator
from jaxmr.tasks.ivae.recipe import build_ivae_recipe
from jaxmr.tasks.ivae.synthetic import build_ivae

__all__ = ["MCCEvaluator", "build_ivae", "build_ivae_recipe"]
