"""Datasets: synthetic benchmark, paired .npz, loader, rendered shapes, Recipe1M readers,
the SCAN/NCR precomputed-feature layout, captions' vocab and tokeniser, noisy correspondence,
the offline scenes retrieval benchmark (`scenes`).

`jaxmr.data.recipe1m_tfds` (TFDS builder) is imported by full path so that importing
`jaxmr.data` does not import tensorflow_datasets.
"""

from jaxmr.data.arrays import ArrayLoader, load_paired_npz
from jaxmr.data.noise import (
    NoisyPairing,
    apply_noise_index,
    caption_level_noise,
    image_level_noise,
    make_or_load_noise,
)
from jaxmr.data.precomp import PrecompSplit, default_vocab_path, gather_rows, load_precomp
from jaxmr.data.samplers import IndexedPairSampler, StreamPairSampler
from jaxmr.data.scene_captions import tokenize_caption
from jaxmr.data.scenes import ensure_scenes, load_scene_factors, write_scenes
from jaxmr.data.shapes import cached_paired_shapes, make_paired_shapes
from jaxmr.data.synthetic import SyntheticSpec, make_synthetic, make_synthetic_with_mixing, unmix
from jaxmr.data.tokenize import nltk_word_tokenize
from jaxmr.data.vocab import Vocab, build_vocab, load_vocab, save_vocab

__all__ = [
    "ArrayLoader",
    "IndexedPairSampler",
    "NoisyPairing",
    "PrecompSplit",
    "StreamPairSampler",
    "SyntheticSpec",
    "Vocab",
    "apply_noise_index",
    "build_vocab",
    "cached_paired_shapes",
    "caption_level_noise",
    "default_vocab_path",
    "ensure_scenes",
    "gather_rows",
    "image_level_noise",
    "load_paired_npz",
    "load_precomp",
    "load_scene_factors",
    "load_vocab",
    "make_or_load_noise",
    "make_paired_shapes",
    "make_synthetic",
    "make_synthetic_with_mixing",
    "nltk_word_tokenize",
    "save_vocab",
    "tokenize_caption",
    "unmix",
    "write_scenes",
]
