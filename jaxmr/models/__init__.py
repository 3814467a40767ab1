"""Flax NNX modules (no losses). The pretrained towers (`jaxmr.models.text`,
`jaxmr.models.image`, and `jaxmr.models.towers` for the towers a config names) import
`transformers` and are imported by full path."""

from jaxmr.models.critics import (
    BilinearCritic,
    ConcatCritic,
    Discriminator,
    GaussianConditional,
    SeparableCritic,
)
from jaxmr.models.ivae import MLP, ConditionalPrior, GaussianEncoder, ResidualFlow
from jaxmr.models.retrieval import GRUTextEncoder, ProjectedTextEncoder, RegionEncoder

__all__ = [
    "MLP",
    "BilinearCritic",
    "ConcatCritic",
    "ConditionalPrior",
    "Discriminator",
    "GaussianConditional",
    "GaussianEncoder",
    "GRUTextEncoder",
    "ProjectedTextEncoder",
    "RegionEncoder",
    "ResidualFlow",
    "SeparableCritic",
]
