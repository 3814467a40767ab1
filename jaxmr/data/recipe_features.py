"""Recipe1M features for the heads: frozen towers run once per split, cached on disk.

Sources (`config.data.source`, one of `SOURCES`):
- `root`: a local Recipe1M copy (`config.data.root`) read by `jaxmr.data.recipe1m`;
- `tfds`: the array_record dataset built by `recipe1m_tfds.build_recipe1m`
  (`config.data.tfds_dir`, `config.data.tfds_config`);
- `fixture`: the generated Recipe1M-format fixture (`recipe1m_fixture`), written under
  `config.data.cache_dir` (`:smoke` runs and tests);
- `features`: precomputed `(ids, image, recipe)` files (`config.data.features_path`,
  `{split}` replaced), read by `jaxmr.data.features`; food factors then need
  `config.data.root` as well (records are looked up by id).
With the first three the recipe text (title, ingredients, instructions) goes through the
text tower and the first decodable image of each recipe through the image tower, both frozen
(`jaxmr.models.towers`), ONCE: features, titles, food-factor scores and image references are
cached as `<cache_dir>/features/<source>-<hash>/<split>.npz`, the hash covering everything
that determines them (source, file sizes and times, towers, image size, text fields).

Imported by full path (not re-exported by `jaxmr.data`): it reaches the towers, hence
`transformers`, on first use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from jaxmr.data import food_factors as ff
from jaxmr.models.towers import load_towers, tower_key

logger = logging.getLogger(__name__)

SOURCES = ("root", "tfds", "fixture", "features")
# Factor columns of the fixture source: the planted truth, correlated but never matched.
PLANTED = ("planted_greenness", "planted_wateriness", "planted_savoriness")
# Bump when the content of cached feature files changes (2: three planted factors).
FEATURE_CACHE_VERSION = 2


@dataclasses.dataclass
class RecipeFeatures:
    """One split, row-aligned: tower features plus what the evaluators show and score.

    Attributes:
        ids: ``[N]`` recipe ids.
        image: ``[N, D_img]`` float32 image features (first image of each recipe).
        recipe: ``[N, D_rec]`` float32 recipe-text features.
        titles: ``[N]`` titles ("" when unknown).
        factors: ``[N, k]`` food-factor scores (NaN where unknown), see `food_factors`.
        factor_names: ``k`` names.
        image_refs: ``[N]`` gallery image references: a file path, ``tfds:<index>`` or "".
    """

    ids: np.ndarray
    image: np.ndarray
    recipe: np.ndarray
    titles: np.ndarray
    factors: np.ndarray
    factor_names: list[str]
    image_refs: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, path: str) -> None:
        tmp = f"{path}.{os.getpid()}.tmp.npz"  # one per writer
        np.savez(
            tmp,
            ids=self.ids.astype(str),
            image=self.image,
            recipe=self.recipe,
            titles=self.titles.astype(str),
            factors=self.factors,
            factor_names=np.asarray(self.factor_names, str),
            image_refs=self.image_refs.astype(str),
        )
        os.replace(tmp, path)  # atomic: a killed run never leaves half a cache file

    @classmethod
    def load(cls, path: str) -> RecipeFeatures:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                ids=z["ids"],
                image=z["image"].astype(np.float32),
                recipe=z["recipe"].astype(np.float32),
                titles=z["titles"],
                factors=z["factors"].astype(np.float64),
                factor_names=[str(n) for n in z["factor_names"]],
                image_refs=z["image_refs"],
            )


def _notice(msg: str) -> None:
    """Tells the user (process 0, stdout) what is read from or written to the cache."""
    if jax.process_index() == 0:
        print(msg, flush=True)


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else ""


def fixture_root(data_cfg) -> str:
    """Folder of the generated fixture for `config.data.fixture` (written if absent)."""
    from jaxmr.data.recipe1m_fixture import make_recipe1m_fixture  # noqa: PLC0415

    fx = data_cfg.fixture
    name = f"fixture-v2-n{fx.n}-s{fx.seed}-p{int(fx.planted_factor)}-d{int(fx.defects)}"
    root = os.path.join(_expand(data_cfg.cache_dir), name)
    marker = os.path.join(root, "planted.json")  # {factor: {recipe id: value}}
    if not os.path.isfile(marker):
        _notice(f"writing the Recipe1M fixture to the cache {root}")
        info = make_recipe1m_fixture(
            root, n=fx.n, seed=fx.seed, planted_factor=fx.planted_factor, defects=fx.defects
        )
        tmp = f"{marker}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(info.factors, f)
        os.replace(tmp, marker)
    return root


def _stat(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def feature_cache_file(data_cfg, model_cfg, split: str) -> str:
    """`<cache_dir>/features/<source>-<hash>/<split>.npz`; the hash changes with the data
    files, towers and options, so stale features are never read."""
    src = data_cfg.source
    key: dict[str, Any] = {"version": FEATURE_CACHE_VERSION, "source": src, "split": split}
    key["max_recipes"] = int(data_cfg.max_recipes)
    if src == "root":
        root = _expand(data_cfg.root)
        key["root"] = root
        for name in ("layer1.json", "layer2.json", "recipes_with_nutritional_info.json"):
            p = os.path.join(root, name)
            key[name] = _stat(p) if os.path.isfile(p) else None
    elif src == "tfds":
        info = os.path.join(_tfds_builder_dir(data_cfg), "dataset_info.json")
        key["tfds"] = [_tfds_builder_dir(data_cfg), _stat(info) if os.path.isfile(info) else None]
    elif src == "fixture":
        key["fixture"] = dict(data_cfg.fixture)
    key["towers"] = tower_key(
        model_cfg.text_tower, model_cfg.image_tower, image_size=data_cfg.image_size
    )
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(_expand(data_cfg.cache_dir), "features", f"{src}-{digest}", f"{split}.npz")


def _tfds_builder_dir(data_cfg) -> str:
    return os.path.join(_expand(data_cfg.tfds_dir), "recipe1m", data_cfg.tfds_config, "1.0.0")


def _load_towers(data_cfg, model_cfg):
    return load_towers(model_cfg.text_tower, model_cfg.image_tower, image_size=data_cfg.image_size)


def _iter_items(data_cfg, split: str) -> Iterator[tuple[dict[str, Any], list[Any], list[str]]]:
    """(record, candidate images (paths or uint8 arrays), gallery references) per recipe."""
    src = data_cfg.source
    if src in ("root", "fixture"):
        from jaxmr.data.recipe1m import Recipe1MReader  # noqa: PLC0415

        root = fixture_root(data_cfg) if src == "fixture" else _expand(data_cfg.root)
        reader = Recipe1MReader(
            root,
            partitions=(split,),
            images_dir=_expand(data_cfg.images_dir) or None,
            check_images="exists",
        )
        for rec in reader:
            yield rec, rec["image_paths"], rec["image_paths"]
        reader.report.log(logger, f"recipe1m {split}")
    else:  # tfds
        from jaxmr.data import recipe1m_tfds  # noqa: PLC0415

        source = recipe1m_tfds.recipe1m_data_source(
            _expand(data_cfg.tfds_dir), split=split, config=data_cfg.tfds_config
        )
        for i in range(len(source)):
            ex = recipe1m_tfds.decode_example(source[i])
            yield ex, [ex["images"][0]], [f"tfds:{i}"]


def _first_image(candidates: list[Any], refs: list[str], size: int):
    """The first candidate that decodes, as uint8 [size, size, 3], with its reference."""
    from jaxmr.data.recipe1m_tfds import load_square_image  # noqa: PLC0415

    for im, ref in zip(candidates, refs, strict=True):
        if not isinstance(im, str):
            return im, ref
        try:
            return load_square_image(im, size), ref
        except Exception:  # PIL raises many types for corrupt files  # noqa: BLE001
            logger.warning("unreadable image %s", im)
    return None, None


def _factors(records: Sequence[dict[str, Any]], planted: dict[str, dict[str, float]] | None):
    """Proxy (and nutrient) scores, then the fixture's planted factors as `PLANTED` columns."""
    factors, names = ff.food_factor_matrix(records)
    if planted is not None:
        cols = [
            [planted[name.removeprefix("planted_")].get(r["id"], np.nan) for name in PLANTED]
            for r in records
        ]
        factors = np.concatenate([factors, np.asarray(cols, np.float64)], axis=1)
        names = names + list(PLANTED)
    return factors, names


def encode_split(data_cfg, model_cfg, split: str, towers=None) -> RecipeFeatures:
    """Runs the frozen towers over one split of a `root`, `tfds` or `fixture` source."""
    from jaxmr.models.image import resnet_features  # noqa: PLC0415
    from jaxmr.models.text import recipe_text  # noqa: PLC0415

    text_tower, image_tower = towers or _load_towers(data_cfg, model_cfg)
    fields = tuple(model_cfg.text_tower.fields)
    size, bs = int(data_cfg.image_size), int(data_cfg.encode_batch_size)
    items = _iter_items(data_cfg, split)
    if data_cfg.max_recipes > 0:
        items = itertools.islice(items, int(data_cfg.max_recipes))
    records, refs, img_feats, rec_feats = [], [], [], []
    chunk: list[tuple[dict[str, Any], np.ndarray]] = []
    skipped = 0

    def flush():
        texts = [recipe_text(r, fields=fields) for r, _ in chunk]
        rec_feats.append(text_tower.encode(texts, batch_size=bs))
        img_feats.append(
            resnet_features(image_tower, np.stack([im for _, im in chunk]), batch_size=bs)
        )
        chunk.clear()
        logger.info("encoded %d recipes of split %s", len(records), split)

    for rec, candidates, cand_refs in items:
        image, ref = _first_image(candidates, cand_refs, size)
        if image is None:
            skipped += 1
            continue
        records.append({k: rec.get(k) for k in ("id", "title", "ingredients", "nutrition")})
        refs.append(ref)
        chunk.append((rec, image))
        if len(chunk) == 8 * bs:
            flush()
    if chunk:
        flush()
    if skipped:
        logger.warning("split %s: %d recipes skipped, no image decoded", split, skipped)
    if not records:
        raise ValueError(f"no usable recipes in split {split!r} of the {data_cfg.source} source")
    planted = None
    if data_cfg.source == "fixture":
        with open(os.path.join(fixture_root(data_cfg), "planted.json")) as f:
            planted = json.load(f)
    factors, names = _factors(records, planted)
    return RecipeFeatures(
        ids=np.asarray([r["id"] for r in records], str),
        image=np.concatenate(img_feats).astype(np.float32),
        recipe=np.concatenate(rec_feats).astype(np.float32),
        titles=np.asarray([r["title"] or "" for r in records], str),
        factors=factors,
        factor_names=names,
        image_refs=np.asarray(refs, str),
    )


def _precomputed_split(data_cfg, split: str) -> RecipeFeatures:
    """Features from files; food factors and gallery images from `root` records if given."""
    from jaxmr.data.features import load_paired_features  # noqa: PLC0415

    pf = load_paired_features(
        _expand(data_cfg.features_path.format(split=split)),
        image_key=data_cfg.image_key,
        recipe_key=data_cfg.recipe_key,
        ids_key=data_cfg.ids_key,
    )
    if data_cfg.max_recipes > 0:
        pf = dataclasses.replace(
            pf,
            ids=pf.ids[: data_cfg.max_recipes],
            image=pf.image[: data_cfg.max_recipes],
            recipe=pf.recipe[: data_cfg.max_recipes],
        )
    n = len(pf)
    titles, refs = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    factors, names = np.zeros((n, 0)), []
    if data_cfg.root:
        from jaxmr.data.recipe1m import Recipe1MReader  # noqa: PLC0415

        row = {str(i): k for k, i in enumerate(pf.ids)}
        found: list[dict[str, Any] | None] = [None] * n
        # Image paths listed in layer2.json, unchecked: they only feed the galleries.
        for rec in Recipe1MReader(
            _expand(data_cfg.root),
            partitions=(split,),
            images_dir=_expand(data_cfg.images_dir) or None,
            check_images="none",
        ):
            k = row.get(rec["id"])
            if k is not None:
                found[k] = rec
        missing = sum(r is None for r in found)
        if missing:
            logger.warning("%d of %d feature ids not found in %s", missing, n, data_cfg.root)
        records = [
            r or {"id": str(i), "ingredients": []} for r, i in zip(found, pf.ids, strict=True)
        ]
        factors, names = ff.food_factor_matrix(records)
        factors[[k for k, r in enumerate(found) if r is None]] = np.nan
        titles = np.asarray([r.get("title") or "" for r in records], object)
        refs = np.asarray([(r.get("image_paths") or [""])[0] for r in records], object)
    return RecipeFeatures(
        ids=pf.ids.astype(str),
        image=np.asarray(pf.image, np.float32),
        recipe=np.asarray(pf.recipe, np.float32),
        titles=titles.astype(str),
        factors=factors,
        factor_names=names,
        image_refs=refs.astype(str),
    )


def load_recipe_features(data_cfg, model_cfg) -> dict[str, RecipeFeatures]:
    """Features of `config.data.{train,eval}_split`: cached, or encoded now and cached.

    Args:
      data_cfg: `config.data`; model_cfg: `config.model` (its `text_tower`, `image_tower`).
    """
    out: dict[str, RecipeFeatures] = {}
    towers = None
    for split in dict.fromkeys((data_cfg.train_split, data_cfg.eval_split)):
        if data_cfg.source == "features":
            out[split] = _precomputed_split(data_cfg, split)
            continue
        path = feature_cache_file(data_cfg, model_cfg, split)
        if os.path.isfile(path):
            _notice(f"{split} features from the cache {path}")
            out[split] = RecipeFeatures.load(path)
            continue
        if towers is None:
            towers = _load_towers(data_cfg, model_cfg)
        feats = encode_split(data_cfg, model_cfg, split, towers)
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            feats.save(path)
            _notice(
                f"cached {len(feats)} encoded {split} recipes in {path} "
                f"({os.path.getsize(path) / 1e6:.1f} MB; move with --config.data.cache_dir=DIR)"
            )
        out[split] = feats
    return out


class _GalleryImages(Sequence):
    """Lazy gallery images: file paths pass through, `tfds:<i>` rows are decoded on demand,
    rows without an image become a grey tile."""

    def __init__(self, refs: np.ndarray, tfds_args: tuple[str, str, str] | None):
        self.refs = [str(r) for r in refs]
        self.tfds_args = tfds_args
        self._source = None

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i):
        ref = self.refs[i]
        if ref.startswith("tfds:") and self.tfds_args is not None:
            from jaxmr.data import recipe1m_tfds  # noqa: PLC0415

            if self._source is None:
                data_dir, split, config = self.tfds_args
                self._source = recipe1m_tfds.recipe1m_data_source(
                    data_dir, split=split, config=config
                )
            return recipe1m_tfds.decode_example(self._source[int(ref[5:])])["images"][0]
        return ref if ref else np.full((32, 32, 3), 200, np.uint8)


def gallery_images(data_cfg, split: str, refs: np.ndarray) -> Sequence:
    """The images behind `RecipeFeatures.image_refs` of one split, for the evaluators'
    galleries: paths, uint8 arrays decoded lazily from TFDS shards, or grey tiles."""
    tfds_args = None
    if data_cfg.source == "tfds":
        tfds_args = (_expand(data_cfg.tfds_dir), split, data_cfg.tfds_config)
    return _GalleryImages(refs, tfds_args)
