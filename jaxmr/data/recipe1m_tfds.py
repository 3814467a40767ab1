"""TFDS builder for Recipe1M that writes array_record shards readable without TensorFlow.

Recipe1M needs registration, so the builder reads a manually downloaded copy
(``manual_dir`` = the Recipe1M root, see :data:`jaxmr.data.recipe1m.EXPECTED_LAYOUT`) through
the streaming :class:`~jaxmr.data.recipe1m.Recipe1MReader`, and writes one example per
recipe. Images are stored as ``uint8`` tensors (centre-cropped to a square, resized to the
config's ``image_size``; up to ``max_images`` per recipe) rather than ``tfds.features.Image``,
whose JPEG encoding needs TensorFlow. Build and read back with plain Python::

    from jaxmr.data import recipe1m_tfds
    builder = recipe1m_tfds.build_recipe1m("~/data/recipe1m", "~/tensorflow_datasets",
                                           image_size=128)
    source = recipe1m_tfds.recipe1m_data_source("~/tensorflow_datasets", split="test",
                                                config="img128")
    example = recipe1m_tfds.decode_example(source[0])

The ``tfds build`` command-line tool is not an option without TensorFlow: in
tensorflow-datasets 4.9.10 it imports TensorFlow, while this Python path does not.

The examples of one split are shuffled by TFDS (key hash), so read order differs from
``layer1.json`` order; each example carries its recipe ``id``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jaxmr.data.recipe1m import NUTRIENTS, PARTITIONS, Recipe1MReader, SkipReport

logger = logging.getLogger(__name__)

NAME = "recipe1m"

_DESCRIPTION = """\
Recipe1M (Salvador et al., CVPR 2017): recipes (title, ingredients, instructions) paired
with food images, in the standard train/val/test partition. One example per recipe with
at least one readable image; ingredients are the det_ingrs.json names with valid=True,
cleaned. Images are uint8 [S, S, 3] tensors (centre crop, resize). Nutrition values per
100 g (energy, fat, protein, salt, saturates, sugars) are NaN where the recipe is not in
recipes_with_nutritional_info.json."""

_CITATION = """\
@inproceedings{salvador2017learning,
  title={Learning Cross-modal Embeddings for Cooking Recipes and Food Images},
  author={Salvador, Amaia and Hynes, Nicholas and Aytar, Yusuf and Marin, Javier and
          Ofli, Ferda and Weber, Ingmar and Torralba, Antonio},
  booktitle={CVPR}, year={2017}}"""

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Register at http://im2recipe.csail.mit.edu/, download recipe1M_layers.tar.gz,
det_ingrs.json, recipe1M_images_{train,val,test}.tar (and optionally
recipes_with_nutritional_info.json), and extract them into manual_dir so that it holds:
  manual_dir/layer1.json
  manual_dir/layer2.json
  manual_dir/det_ingrs.json
  manual_dir/images/<partition>/<i[0]>/<i[1]>/<i[2]>/<i[3]>/<image id>
  manual_dir/recipes_with_nutritional_info.json   (optional)
"""


@dataclasses.dataclass(eq=False)
class Recipe1MConfig(tfds.core.BuilderConfig):
    """Builder config: image side length and the number of images kept per recipe.

    Attributes:
        image_size: side ``S`` of the stored square ``uint8 [S, S, 3]`` images.
        max_images: images kept per recipe (the first ones listed in ``layer2.json``).
    """

    image_size: int = 128
    max_images: int = 5


def config_for(image_size: int, max_images: int = 5) -> Recipe1MConfig:
    """A config named ``img<S>`` (``img<S>_m<M>`` when ``max_images`` is not 5)."""
    name = f"img{image_size}" + ("" if max_images == 5 else f"_m{max_images}")
    return Recipe1MConfig(
        name=name,
        image_size=image_size,
        max_images=max_images,
        description=f"images {image_size}x{image_size}, up to {max_images} per recipe",
    )


def load_square_image(path: str, size: int) -> np.ndarray:
    """Decodes an image file to RGB, centre-crops it to a square and resizes it.

    Args:
        path: image file.
        size: output side length.

    Returns:
        ``uint8 [size, size, 3]``.

    Raises:
        OSError or ValueError (from PIL) if the file cannot be decoded.
    """
    from PIL import Image  # noqa: PLC0415 (keeps PIL out of import time)

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        im = im.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


class Recipe1M(tfds.core.GeneratorBasedBuilder):
    """Recipe1M from a manually downloaded copy, stored without TensorFlow-only features."""

    name = NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: uint8 image tensors, array_record."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [config_for(64), config_for(128), config_for(224, max_images=1)]

    def __init__(self, *args: Any, reader_kwargs: dict[str, Any] | None = None, **kwargs: Any):
        self._reader_kwargs = dict(reader_kwargs or {})
        self.skip_reports: dict[str, SkipReport] = {}
        super().__init__(*args, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.image_size
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "title": tfds.features.Text(),
                    "ingredients": tfds.features.Sequence(tfds.features.Text()),
                    "instructions": tfds.features.Sequence(tfds.features.Text()),
                    "images": tfds.features.Sequence(
                        tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8)
                    ),
                    "nutrition": tfds.features.Tensor(shape=(len(NUTRIENTS),), dtype=np.float32),
                }
            ),
            homepage="http://im2recipe.csail.mit.edu/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        root = os.fspath(dl_manager.manual_dir)
        partitions = self._reader_kwargs.get("partitions", PARTITIONS)
        return {p: self._generate_examples(root, p) for p in partitions}

    def _generate_examples(self, root: str, partition: str):
        cfg = self.builder_config
        kwargs = {k: v for k, v in self._reader_kwargs.items() if k != "partitions"}
        reader = Recipe1MReader(root, partitions=(partition,), **kwargs)
        report = reader.report
        for rec in reader:
            report = reader.report
            images = []
            for path in rec["image_paths"][: cfg.max_images]:
                try:
                    images.append(load_square_image(path, cfg.image_size))
                except Exception:  # PIL raises many types for corrupt files  # noqa: BLE001
                    report.count("unreadable_images", path)
            if not images:
                # The reader only stat()s files; a recipe whose images all fail to decode
                # here moves from "yielded" to "no_readable_images".
                report.count("no_readable_images", rec["id"])
                report.recipes_yielded -= 1
                continue
            nutr = rec["nutrition"] or {}
            yield (
                rec["id"],
                {
                    "id": rec["id"],
                    "title": rec["title"],
                    "ingredients": rec["ingredients"],
                    "instructions": rec["instructions"],
                    "images": images,
                    "nutrition": np.array([nutr.get(k, np.nan) for k in NUTRIENTS], np.float32),
                },
            )
        self.skip_reports[partition] = report
        report.log(logger, f"recipe1m tfds split {partition}")


def build_recipe1m(
    manual_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    image_size: int = 128,
    max_images: int = 5,
    partitions: tuple[str, ...] = PARTITIONS,
    **reader_kwargs: Any,
) -> Recipe1M:
    """Builds (or reuses) the array_record dataset and returns the prepared builder.

    Args:
        manual_dir: the Recipe1M root folder.
        data_dir: TFDS data folder; output goes to ``data_dir/recipe1m/<config>/1.0.0``.
        image_size: stored image side length.
        max_images: images kept per recipe.
        partitions: partitions to build, one split each.
        **reader_kwargs: passed to :class:`~jaxmr.data.recipe1m.Recipe1MReader`
            (e.g. ``nutrition=False``, ``progress_every=``).

    Returns:
        The prepared :class:`Recipe1M` builder; ``builder.skip_reports`` maps each split
        built in this call to its :class:`~jaxmr.data.recipe1m.SkipReport`.
    """
    config = next(
        (
            c
            for c in Recipe1M.BUILDER_CONFIGS
            if c.image_size == image_size and c.max_images == max_images
        ),
        None,
    ) or config_for(image_size, max_images)
    reader_kwargs["partitions"] = tuple(partitions)
    builder = Recipe1M(
        data_dir=os.fspath(os.path.expanduser(data_dir)),
        config=config,
        file_format="array_record",
        reader_kwargs=reader_kwargs,
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(os.path.expanduser(manual_dir))
        )
    )
    return builder


def recipe1m_data_source(
    data_dir: str | os.PathLike, *, split: str, config: str = "img128", version: str = "1.0.0"
):
    """Random-access source over one built split, read with array_record (no TensorFlow).

    Args:
        data_dir: the TFDS data folder given to :func:`build_recipe1m`.
        split: ``"train"``, ``"val"`` or ``"test"`` (TFDS slicing such as ``"test[:1000]"``
            works too).
        config: config name, e.g. ``"img128"``.
        version: dataset version.

    Returns:
        A sequence-like ``ArrayRecordDataSource``; ``source[i]`` is an example dict (text
        as bytes; see :func:`decode_example`).

    Raises:
        FileNotFoundError: if the dataset was not built there (names the folder).
    """
    builder_dir = os.path.join(os.path.expanduser(os.fspath(data_dir)), NAME, config, version)
    if not os.path.isfile(os.path.join(builder_dir, "dataset_info.json")):
        raise FileNotFoundError(
            f"no built Recipe1M dataset at {builder_dir} (expected dataset_info.json and "
            f"{NAME}-<split>.array_record-* shards); build it with build_recipe1m()"
        )
    builder = tfds.builder_from_directory(builder_dir)
    return builder.as_data_source(split=split)


def decode_example(example: dict[str, Any]) -> dict[str, Any]:
    """Turns a stored example into the reader's record form (str text, nutrition dict).

    Args:
        example: one element of :func:`recipe1m_data_source`.

    Returns:
        ``{"id", "title", "ingredients", "instructions", "images" (uint8 [M, S, S, 3]),
        "nutrition" (dict or None)}``.
    """

    def text(x: Any) -> str:
        return x.decode("utf-8") if isinstance(x, bytes) else str(x)

    nutr = np.asarray(example["nutrition"], np.float32)
    return {
        "id": text(example["id"]),
        "title": text(example["title"]),
        "ingredients": [text(x) for x in example["ingredients"]],
        "instructions": [text(x) for x in example["instructions"]],
        "images": np.asarray(example["images"], np.uint8),
        "nutrition": (
            None
            if np.all(np.isnan(nutr))
            else {k: float(v) for k, v in zip(NUTRIENTS, nutr, strict=True)}
        ),
    }
