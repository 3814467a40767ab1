"""iIVAE and its explicit-decoder baselines: the synthetic/.npz/shapes task, the Recipe1M task
and their evaluators (MCC, latent traversals)."""

from jaxmr.tasks.ivae.evaluators import MCCEvaluator
from jaxmr.tasks.ivae.recipe import build_ivae_recipe
from jaxmr.tasks.ivae.synthetic import build_ivae
from jaxmr.tasks.ivae.traversal import TraversalEvaluator

__all__ = ["MCCEvaluator", "TraversalEvaluator", "build_ivae", "build_ivae_recipe"]
