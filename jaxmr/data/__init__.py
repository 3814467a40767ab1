"""Datasets: synthetic benchmark, paired .npz, loader, rendered shapes, Recipe1M readers,
the offline scenes retrieval benchmark (`scenes`).

`jaxmr.data.recipe1m_tfds` (TFDS builder) is imported by full path so that importing
`jaxmr.data` does not import tensorflow_datasets.
"""

from jaxmr.data.arrays import ArrayLoader, load_paired_npz
from jaxmr.data.scenes import ensure_scenes, load_scene_factors, write_scenes
from jaxmr.data.shapes import cached_paired_shapes, make_paired_shapes
from jaxmr.data.synthetic import SyntheticSpec, make_synthetic

__all__ = [
    "ArrayLoader",
    "SyntheticSpec",
    "cached_paired_shapes",
    "ensure_scenes",
    "load_paired_npz",
    "load_scene_factors",
    "make_paired_shapes",
    "make_synthetic",
    "write_scenes",
]
