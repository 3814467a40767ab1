"""iIVAE on Recipe1M (docs/methods.md §1, docs/recipe1m.md): frozen towers, cached features, heads.

Pipeline of `build_ivae_recipe(config)`:

1. **Features per split** (`config.data.train_split`, `config.data.eval_split`), from one of
   the sources in `config.data.source`:
   - `root`: a local Recipe1M copy (`config.data.root`) read by `Recipe1MReader`;
   - `tfds`: the array_record dataset built by `recipe1m_tfds.build_recipe1m`
     (`config.data.tfds_dir`, `config.data.tfds_config`);
   - `fixture`: the generated Recipe1M-format fixture, written under `config.data.cache_dir`
     (`:smoke` runs and tests);
   - `features`: precomputed `(ids, image, recipe)` files (`config.data.features_path`,
     `{split}` replaced), read by `jaxmr.data.features`; food factors then need
     `config.data.root` as well (records are looked up by id).
   With the first three the recipe text (title, ingredients, instructions) goes through
   the text tower and the first image of each recipe through the image tower, both
   frozen, ONCE: the features, titles, food-factor scores and image references are cached
   as `<cache_dir>/features/<source>-<hash>/<split>.npz`, the hash covering everything that
   determines them (source, file sizes and times, towers, image size, text fields).
2. **Head inputs [R]**: the query modality x (`config.model.query`: `image` or `recipe`)
   conditions the prior; it is standardised with train-split statistics. The target
   modality y is projected to `config.model.target_dim` = D dims by a fixed PCA fitted on
   the train split and whitened (unit variance per component), because the invertible
   embedding g needs a moderate dimension and a *learned* projection in front of an exact
   likelihood would let the model shrink the data to raise its density.
3. **Heads**: `IVAEModel` and the losses of `jaxmr.tasks.ivae.synthetic` (`implicit`: invertible
   residual flow g with the Jacobian penalty; D > d uses the full-dimensional flow,
   candidate (i); `isometry`: the documented ablation). Nothing is copied.
4. **Evaluators** on the eval split (`jaxmr.tasks.ivae.recipe_evaluators`): the im2recipe
   protocol (cosine of mu(x) and g(y)_{:d}, and the likelihood score log p(g(y) | x)) and the
   food-factor alignment with heatmap and extremes galleries.

Fine-tuning the towers is not implemented: towers are frozen and encoded once.
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
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmr.data import food_factors as ff
from jaxmr.tasks.ivae import synthetic as ivae_lib
from jaxmr.tasks.ivae.recipe_evaluators import FoodFactorEvaluator, RetrievalEvaluator
from jaxmr.tasks.ivae.synthetic import IVAEModel, _implicit_loss, _isometry_loss
from jaxmr.train.optim import build_optimizer
from jaxmr.train.task import Phase, Task

logger = logging.getLogger(__name__)

SOURCES = ("root", "tfds", "fixture", "features")
QUERIES = ("image", "recipe")
VARIANTS = ("implicit", "isometry")  # variants that embed y alone (needed for retrieval)
PLANTED = "planted_greenness"
# Bump when the content of cached feature files changes.
FEATURE_CACHE_VERSION = 1


# --------------------------------------------------------------------------- features


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
        tmp = path + ".tmp.npz"
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
    name = f"fixture-n{fx.n}-s{fx.seed}-p{int(fx.planted_factor)}-d{int(fx.defects)}"
    root = os.path.join(_expand(data_cfg.cache_dir), name)
    marker = os.path.join(root, "planted.json")
    if not os.path.isfile(marker):
        _notice(f"writing the Recipe1M fixture to the cache {root}")
        info = make_recipe1m_fixture(
            root, n=fx.n, seed=fx.seed, planted_factor=fx.planted_factor, defects=fx.defects
        )
        with open(marker + ".tmp", "w") as f:
            json.dump(info.greenness, f)
        os.replace(marker + ".tmp", marker)
    return root


def _stat(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _tower_key(model_cfg, data_cfg) -> dict[str, Any]:
    tt, it = model_cfg.text_tower, model_cfg.image_tower
    text = (
        {"random_init": True, "seed": tt.seed}
        if tt.random_init
        else {"path": _expand(_text_path(tt.path))}
    )
    image = {"random_init": True, "seed": it.seed} if it.random_init else {"path": _expand(it.path)}
    return {
        "text": text | {"max_length": tt.max_length, "fields": list(tt.fields)},
        "image": image | {"image_size": data_cfg.image_size},
    }


def _cache_file(data_cfg, model_cfg, split: str) -> str:
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
    key["towers"] = _tower_key(model_cfg, data_cfg)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(_expand(data_cfg.cache_dir), "features", f"{src}-{digest}", f"{split}.npz")


def _text_path(path: str) -> str:
    if path in ("", "minilm"):
        from jaxmr.models.text import minilm_local_path  # noqa: PLC0415

        return str(minilm_local_path())
    return path


def _tfds_builder_dir(data_cfg) -> str:
    return os.path.join(_expand(data_cfg.tfds_dir), "recipe1m", data_cfg.tfds_config, "1.0.0")


def random_text_tower(max_length: int, *, seed: int = 0, hidden: int = 32):
    """A one-layer random BERT with the MiniLM tokenizer: fast, for tests and smoke runs.

    Mean-pooled states of a random transformer are close to a random projection of the bag
    of tokens, so ingredient words still leave a linear trace in the features.
    """
    from transformers import AutoTokenizer, BertConfig, FlaxBertModel  # noqa: PLC0415

    from jaxmr.models.text import TextTower, minilm_local_path  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(minilm_local_path(), local_files_only=True)
    cfg = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max(max_length, 64),
    )
    model = FlaxBertModel(cfg, _do_init=False)
    # rbg key: XLA compiles threefry-based initialisers slowly on CPU (see models/image.py).
    params = jax.jit(model.init_weights, static_argnums=1)(jax.random.key(seed, impl="rbg"), (1, 8))
    return TextTower(
        model=model, tokenizer=tokenizer, params=params, trainable=False, max_length=max_length
    )


# Frozen towers are immutable: one load per process serves every build (train then eval,
# or several tasks in one test session).
_TOWERS: dict[str, Any] = {}


def load_towers(model_cfg, data_cfg):
    """(text tower, image tower), frozen, from `config.model.{text,image}_tower`."""
    from jaxmr.models.image import load_image_tower  # noqa: PLC0415
    from jaxmr.models.text import load_text_tower  # noqa: PLC0415

    tt, it = model_cfg.text_tower, model_cfg.image_tower
    if not it.random_init and not it.path:
        raise ValueError(
            "config.model.image_tower.path is empty: give a local Flax ResNet folder "
            "(config.json + flax_model.msgpack or model.safetensors), or set "
            "config.model.image_tower.random_init=True explicitly (features carry no "
            "pretrained knowledge then)"
        )
    keys = _tower_key(model_cfg, data_cfg)
    text_key, image_key = (json.dumps(keys[k], sort_keys=True) for k in ("text", "image"))
    if text_key not in _TOWERS:
        if tt.random_init:
            _TOWERS[text_key] = random_text_tower(tt.max_length, seed=tt.seed)
        else:
            _TOWERS[text_key] = load_text_tower(_text_path(tt.path), max_length=tt.max_length)
    if image_key not in _TOWERS:
        if it.random_init:
            _TOWERS[image_key] = load_image_tower(
                random_init=True, seed=it.seed, image_size=data_cfg.image_size
            )
        else:
            _TOWERS[image_key] = load_image_tower(_expand(it.path))
    return _TOWERS[text_key], _TOWERS[image_key]


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
        logger.info("recipe1m %s: %s", split, reader.report.summary().replace("\n", "; "))
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


def _factors(records: Sequence[dict[str, Any]], planted: dict[str, float] | None):
    factors, names = ff.food_factor_matrix(records)
    if planted is not None:
        col = np.array([planted.get(r["id"], np.nan) for r in records], np.float64)
        factors, names = np.concatenate([factors, col[:, None]], axis=1), names + [PLANTED]
    return factors, names


def encode_split(data_cfg, model_cfg, split: str, towers=None) -> RecipeFeatures:
    """Runs the frozen towers over one split of a `root`, `tfds` or `fixture` source."""
    from jaxmr.models.image import resnet_features  # noqa: PLC0415
    from jaxmr.models.text import recipe_text  # noqa: PLC0415

    text_tower, image_tower = towers or load_towers(model_cfg, data_cfg)
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


def load_recipe_features(cfg) -> dict[str, RecipeFeatures]:
    """Features of the train and eval splits: cached, or encoded now and cached."""
    data_cfg, model_cfg = cfg.data, cfg.model
    out: dict[str, RecipeFeatures] = {}
    towers = None
    for split in dict.fromkeys((data_cfg.train_split, data_cfg.eval_split)):
        if data_cfg.source == "features":
            out[split] = _precomputed_split(data_cfg, split)
            continue
        path = _cache_file(data_cfg, model_cfg, split)
        if os.path.isfile(path):
            _notice(f"{split} features from the cache {path}")
            out[split] = RecipeFeatures.load(path)
            continue
        if towers is None:
            towers = load_towers(model_cfg, data_cfg)
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


# --------------------------------------------------------------------------- head inputs


@dataclasses.dataclass(frozen=True)
class HeadInputs:
    """Fixed maps from tower features to the heads' inputs, fitted on the train split [R].

    x = (query - mean) / std per dimension; y = ((target - mean) @ components) / scales: PCA
    to D components, each scaled to unit variance on the train split (whitening).
    """

    query: str
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_proj: np.ndarray  # [D_target_features, D], whitening included

    @classmethod
    def fit(cls, train: RecipeFeatures, query: str, target_dim: int) -> HeadInputs:
        x, y = _modalities(train, query)
        x_mean, x_std = x.mean(0), x.std(0)
        y_mean = y.mean(0)
        if target_dim <= 0:  # standardise only
            proj = np.diag(1.0 / np.maximum(y.std(0), 1e-6))
        else:
            if target_dim > min(y.shape):
                raise ValueError(
                    f"config.model.target_dim={target_dim} exceeds min(train examples, target "
                    f"feature dim) = {min(y.shape)}"
                )
            _, sv, vt = np.linalg.svd(y - y_mean, full_matrices=False)
            scale = np.maximum(sv[:target_dim] / np.sqrt(max(len(y) - 1, 1)), 1e-6)
            proj = vt[:target_dim].T / scale
        return cls(
            query,
            x_mean.astype(np.float32),
            np.maximum(x_std, 1e-6).astype(np.float32),
            y_mean.astype(np.float32),
            proj.astype(np.float32),
        )

    def __call__(self, feats: RecipeFeatures) -> dict[str, np.ndarray]:
        x, y = _modalities(feats, self.query)
        return {
            "x": ((x - self.x_mean) / self.x_std).astype(np.float32),
            "y": ((y - self.y_mean) @ self.y_proj).astype(np.float32),
        }


def _modalities(feats: RecipeFeatures, query: str) -> tuple[np.ndarray, np.ndarray]:
    """(query features x, target features y) for `config.model.query`."""
    return (feats.image, feats.recipe) if query == "image" else (feats.recipe, feats.image)


# --------------------------------------------------------------------------- task


def _check(cfg) -> None:
    d, m = cfg.data, cfg.model
    if d.source not in SOURCES:
        raise ValueError(f"config.data.source must be one of {SOURCES}, got {d.source!r}")
    if d.source == "root" and not d.root:
        raise ValueError(
            "config.data.root is empty: set --config.data.root to your Recipe1M folder "
            "(docs/recipe1m.md §1), or use --config=configs/ivae_recipe.py:smoke for the fixture"
        )
    if d.source == "tfds" and not d.tfds_dir:
        raise ValueError("config.data.tfds_dir is empty (the data_dir given to build_recipe1m)")
    if d.source == "features" and "{split}" not in d.features_path:
        raise ValueError(
            "config.data.features_path must contain '{split}' (one file per split), got "
            f"{d.features_path!r}"
        )
    if m.query not in QUERIES:
        raise ValueError(f"config.model.query must be one of {QUERIES}, got {m.query!r}")
    if m.variant not in VARIANTS:
        raise ValueError(
            f"config.model.variant must be one of {VARIANTS} for Recipe1M (retrieval needs an "
            f"embedding of the target alone), got {m.variant!r}"
        )
    # The D > d candidates are the iIVAE task's (its TARGET_MODES when it defines them).
    modes = getattr(ivae_lib, "TARGET_MODES", ("full",))
    if m.target_mode not in modes:
        raise ValueError(f"config.model.target_mode must be one of {modes}, got {m.target_mode!r}")
    if cfg.evals.food.latents not in ("target", "query"):
        raise ValueError(
            f"config.evals.food.latents must be 'target' or 'query', got {cfg.evals.food.latents!r}"
        )


def build_ivae_recipe(cfg) -> Task:
    _check(cfg)
    splits = load_recipe_features(cfg)
    train, held = splits[cfg.data.train_split], splits[cfg.data.eval_split]
    m = cfg.model
    inputs = HeadInputs.fit(train, m.query, int(m.target_dim))
    arrays, eval_arrays = inputs(train), inputs(held)
    x_dim, y_dim = arrays["x"].shape[1], arrays["y"].shape[1]
    d = int(m.latent_dim)
    if d > y_dim:
        raise ValueError(f"config.model.latent_dim={d} exceeds the target dimension D={y_dim}")
    loss_cfg = cfg.loss
    beta, gamma = float(loss_cfg.beta), float(loss_cfg.gamma)

    abstract = nnx.eval_shape(lambda: IVAEModel(cfg, x_dim, y_dim, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)

    def init_fn(key):
        model = IVAEModel(cfg, x_dim, y_dim, rngs=nnx.Rngs(key))
        return {"model": nnx.to_pure_dict(nnx.split(model)[1])}

    def bind(params) -> IVAEModel:
        state = jax.tree.map(lambda a: a, abstract_state)
        nnx.replace_by_pure_dict(state, params["model"])
        return nnx.merge(graphdef, state)

    def loss_fn(params, batch, ctx):
        key = ctx.key
        model = bind(params)
        if m.variant == "implicit":
            return _implicit_loss(model, batch["x"], batch["y"], key, d, loss_cfg, beta, gamma)
        return _isometry_loss(model, batch["x"], batch["y"], key, loss_cfg, gamma)

    def predict_fn(params, batch):
        """z = g(y)_{:d} (target latents) and the prior N(mean, exp(logvar)) given x."""
        model = bind(params)
        z = model.flow(batch["y"])[..., :d] if m.variant == "implicit" else model.embed(batch["y"])
        mean, logvar = model.prior(batch["x"])
        return {"z": z, "mean": mean, "logvar": jnp.broadcast_to(logvar, mean.shape)}

    evaluators = []
    ev_cfg = cfg.evals
    if ev_cfg.retrieval.every_steps >= 0:
        r = ev_cfg.retrieval
        evaluators.append(
            RetrievalEvaluator(
                "retrieval",
                predict_fn,
                eval_arrays,
                query=m.query,
                every_steps=r.every_steps,
                bag_sizes=tuple(r.bag_sizes),
                n_bags=r.n_bags,
                seed=r.seed,
                scores=tuple(r.scores),
            )
        )
    if ev_cfg.food.every_steps >= 0 and held.factors.shape[1]:
        f = ev_cfg.food
        evaluators.append(
            FoodFactorEvaluator(
                "food",
                predict_fn,
                eval_arrays,
                factors=held.factors,
                factor_names=held.factor_names,
                titles=list(held.titles),
                images=gallery_images(cfg.data, cfg.data.eval_split, held.image_refs),
                latents=f.latents,
                every_steps=f.every_steps,
                max_examples=f.max_examples,
                gallery_n=f.gallery_n,
                seed=f.seed,
            )
        )
    elif ev_cfg.food.every_steps >= 0:
        logger.warning("no food factors for split %s (features without config.data.root)", held)
    return Task(
        name="ivae_recipe",
        init_fn=init_fn,
        optimizers={"model": build_optimizer(cfg.optim, cfg.schedule, cfg.total_steps)},
        phases=(Phase("train", ("model",), loss_fn),),
        predict_fn=predict_fn,
        train_arrays=arrays,
        evaluators=evaluators,
        info={
            "variant": f"{m.variant} {m.query}->{'recipe' if m.query == 'image' else 'image'}",
            "x_dim": x_dim,
            "y_dim": y_dim,
            "latent_dim": d,
            "num_examples": len(train),
            "num_eval_examples": len(held),
            "head_inputs": inputs,
            "bind": bind,
        },
    )


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


def gallery_images(data_cfg, split: str, refs: np.ndarray) -> _GalleryImages:
    tfds_args = None
    if data_cfg.source == "tfds":
        tfds_args = (_expand(data_cfg.tfds_dir), split, data_cfg.tfds_config)
    return _GalleryImages(refs, tfds_args)
