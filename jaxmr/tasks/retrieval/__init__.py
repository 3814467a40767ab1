"""Noisy-correspondence image-text retrieval: baselines (VSE++, InfoNCE, NCR-style)."""

from jaxmr.tasks.retrieval.task import METHODS, build_retrieval

__all__ = ["METHODS", "build_retrieval"]
