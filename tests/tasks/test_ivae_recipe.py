"""The Recipe1M iIVAE task end to end on generated fixtures: encode + cache, train, eval.

Towers are the tiny random ones of `configs/ivae_recipe.py:smoke` (one-layer BERT with the
MiniLM tokenizer, two-stage ResNet); the pretrained MiniLM run is marked slow.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import ivae_recipe
from jaxmr.data import recipe_features as rf
from jaxmr.evaluate import evaluate
from jaxmr.tasks import TASKS, build_task
from jaxmr.tasks.ivae import recipe as task_lib
from jaxmr.tasks.ivae import recipe_planted
from jaxmr.train import loop
from jaxmr.train import mesh as mesh_lib
from jaxmr.train import step as step_lib
from jaxmr.train.task import StepContext
from tests.conftest import requires_minilm

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One feature cache for the module: the fixture is encoded once."""
    return str(tmp_path_factory.mktemp("recipe_cache"))


def _config(cache_dir, arg="smoke", **overrides):
    config = ivae_recipe.get_config(arg)
    config.data.cache_dir = cache_dir
    for key, value in overrides.items():
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return config


@requires_minilm
def test_smoke_train_then_eval_writes_metrics_and_figures(cache_dir, tmp_path):
    workdir = str(tmp_path / "run")
    config = _config(cache_dir, total_steps=40)
    config.schedule.checkpoint_every_steps = 40
    config.evals.retrieval.every_steps = 40
    config.evals.food.every_steps = 40
    out = loop.train_and_evaluate(build_task(config), config, workdir)
    assert out["step"] == 40 and np.isfinite(out["train/loss"])
    assert 1.0 <= out["retrieval/cosine/bag50/i2r/medR"] <= 50.0
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["40"]

    metrics = evaluate(config, workdir)
    on_disk = json.load(open(os.path.join(workdir, "eval", "metrics.json")))
    assert on_disk["task"] == "ivae_recipe" and on_disk["step"] == 40
    for score in ("cosine", "loglik"):
        for bag in ("bag25", "bag50"):
            for d in ("i2r", "r2i"):
                for m in ("medR", "R@1", "R@5", "R@10", "medR_std"):
                    assert np.isfinite(on_disk[f"retrieval/{score}/{bag}/{d}/{m}"]), (score, bag)
    assert on_disk["retrieval/protocol"]["n_bags"] == 10
    assert on_disk["retrieval/cosine/bag50/i2r/R@1"] == pytest.approx(
        out["retrieval/cosine/bag50/i2r/R@1"]
    )
    sides = on_disk["food/sides"]
    assert sides == {
        "target": "target latents z = g(y) (recipe side)",
        "prior_mean": "prior mean mu(x) (image side)",
    }
    for side in ("target", "prior_mean"):
        table = on_disk[f"food/{side}/table"]
        for name in ("savoriness", "wateriness", "greenness", "energy", "sugars", *rf.PLANTED):
            assert len(table[name]["spearman"]) == config.model.latent_dim, name
        for name in ("savoriness", "wateriness", "greenness"):
            assert table[name]["matched_latent"] in range(config.model.latent_dim)
        assert 0.0 <= on_disk[f"food/{side}/lexicon"]["mcc"] <= 1.0
        assert 0.0 <= on_disk[f"food/{side}/nutrition"]["mcc"] <= 1.0
        assert table["planted_greenness"]["matched_latent"] is None  # shown, not matched
        assert 0.0 <= out[f"food/{side}/best_abs_rho/planted_savoriness"] <= 1.0
    figures = on_disk["figures"]
    assert figures == metrics["figures"]
    names = sorted(os.path.basename(f) for f in figures)
    assert names == sorted(
        f"{side}_{name}"
        for side in ("target", "prior_mean")
        for name in ["food_factors_heatmap.png"] + [f"latent_{j}_extremes.png" for j in range(4)]
    )
    for fig in figures:
        with open(os.path.join(workdir, fig), "rb") as f:
            assert f.read(8) == PNG
        with Image.open(os.path.join(workdir, fig)) as im:
            assert im.size[0] > 100 and im.size[1] > 100


@pytest.fixture(scope="module")
def planted_run(cache_dir):
    """The default direction (image -> recipe) of `:smoke` on the planted fixture (600
    recipes, 120 test), seed 0: planted-factor |rho| of both sides at initialisation and
    after the 300 steps. One training run shared by the planted-factor tests."""
    config = _config(cache_dir)
    config.evals.retrieval.every_steps = -1
    config.evals.food.every_steps = 0
    out = recipe_planted.train_and_score(config)
    return {when: recipe_planted.planted_rhos(out[when]) for when in ("init", "trained")}


@requires_minilm
def test_planted_factors_in_the_target_latents(planted_run):
    """Each planted factor has a recipe-side latent z = g(y) with |rho| >= 0.5 after training
    (docs/recipe1m.md §9: 0.52 / 0.58 / 0.61 for this seed). Needs the query-predicted basis
    of the target (`model.target_basis="cca"`) and D > d: with the old top-4 whitened PCA the
    text latents stay at 0.42 / 0.50 / 0.43, below 0.5 on two factors."""
    trained = planted_run["trained"]["target"]
    for factor, rho in trained.items():
        assert rho >= 0.5, (factor, planted_run)


@requires_minilm
def test_planted_factors_are_learned_by_the_prior_mean(planted_run):
    """The image-side prior mean mu(x) learns all three (|rho| >= 0.7), and wateriness and
    savoriness, which a random prior network does not carry at initialisation, gain >= 0.1."""
    init, trained = planted_run["init"]["prior_mean"], planted_run["trained"]["prior_mean"]
    assert min(trained.values()) >= 0.7, planted_run
    for factor in ("wateriness", "savoriness"):
        assert trained[factor] >= init[factor] + 0.1, (factor, planted_run)


@pytest.mark.slow
@requires_minilm
def test_training_improves_the_planted_factors_with_minilm(cache_dir):
    """The issue's target on the planted fixture: with the MiniLM text tower, d = 8, D = 32
    and the query-predicted basis, the recipe-side latents z = g(y) of the default direction
    reach |rho| >= 0.5 on all three planted factors AND training raises each (seed 0:
    0.55 / 0.59 / 0.65 -> 0.62 / 0.70 / 0.72, docs/recipe1m.md §9; with principal axes,
    `target_basis="pca"`, greenness stays at 0.15). ~1 min: MiniLM encodes the 600 recipes
    once, then 300 steps."""
    config = _config(
        cache_dir,
        **{"model.text_tower.random_init": False, "model.latent_dim": 8, "model.target_dim": 32},
    )
    config.evals.retrieval.every_steps = -1
    config.evals.food.every_steps = 0
    out = recipe_planted.train_and_score(config)
    init = recipe_planted.planted_rhos(out["init"])["target"]
    trained = recipe_planted.planted_rhos(out["trained"])["target"]
    for factor in trained:
        assert trained[factor] >= 0.5 and trained[factor] >= init[factor] + 0.03, (init, trained)


@requires_minilm
def test_feature_cache_is_reused_and_keyed_by_towers(cache_dir, monkeypatch):
    config = _config(cache_dir)
    first = rf.load_recipe_features(config.data, config.model)  # encoded by the tests above, or now

    def no_towers(*a, **k):
        raise AssertionError("towers loaded although the features are cached")

    monkeypatch.setattr(rf, "load_towers", no_towers)
    again = rf.load_recipe_features(config.data, config.model)
    for split in ("train", "test"):
        np.testing.assert_array_equal(first[split].recipe, again[split].recipe)
        np.testing.assert_array_equal(first[split].ids, again[split].ids)
    other = _config(cache_dir, **{"model.text_tower.seed": 1})
    assert rf.feature_cache_file(other.data, other.model, "test") != rf.feature_cache_file(
        config.data, config.model, "test"
    )
    with pytest.raises(AssertionError, match="towers loaded"):
        rf.load_recipe_features(other.data, other.model)


@requires_minilm
def test_precomputed_features_with_root_for_food_factors(cache_dir, tmp_path):
    config = _config(cache_dir)
    feats = rf.load_recipe_features(config.data, config.model)
    for split, f in feats.items():
        # Reversed order: the reader must align by id, not by position.
        np.savez(
            tmp_path / f"{split}.npz", ids=f.ids[::-1], image=f.image[::-1], recipe=f.recipe[::-1]
        )
    root = rf.fixture_root(config.data)
    pre = _config(cache_dir, **{"data.source": "features", "data.root": root})
    pre.data.features_path = str(tmp_path / "{split}.npz")
    got = rf.load_recipe_features(pre.data, pre.model)["test"]
    want = feats["test"]
    order = np.argsort(want.ids)
    back = np.argsort(got.ids)
    np.testing.assert_allclose(got.image[back], want.image[order])
    lex = [want.factor_names.index(n) for n in ("savoriness", "wateriness", "greenness")]
    np.testing.assert_allclose(got.factors[back][:, :3], want.factors[order][:, lex])
    assert all(os.path.isfile(p) for p in got.image_refs)
    task = TASKS[pre.task](pre)
    assert [e.name for e in task.evaluators] == ["retrieval", "food"]


@requires_minilm
def test_tfds_source_encodes_shards_and_draws_galleries_from_them(tmp_path):
    from jaxmr.data import recipe1m_tfds
    from jaxmr.data.recipe1m_fixture import make_recipe1m_fixture

    root = tmp_path / "r1m"
    info = make_recipe1m_fixture(root, n=60, seed=3, defects=True)
    recipe1m_tfds.build_recipe1m(root, tmp_path / "tfds", image_size=16, max_images=1)
    config = _config(
        str(tmp_path / "cache"),
        **{
            "data.source": "tfds",
            "data.tfds_dir": str(tmp_path / "tfds"),
            "data.tfds_config": "img16_m1",
            "data.image_size": 16,
            "batch_size": 16,
        },
    )
    config.evals.retrieval.bag_sizes = (5, 1000)  # 1000 > the split: the whole split instead
    config.evals.food.gallery_n = 2
    task = TASKS[config.task](config)
    test_ids = {i for i in info.clean_ids if info.partition[i] == "test"}
    held = rf.load_recipe_features(config.data, config.model)["test"]
    assert set(held.ids) == test_ids and held.image.shape[1] == 16
    assert all(r.startswith("tfds:") for r in held.image_refs)
    mesh = mesh_lib.make_data_mesh(1)
    params = step_lib.init_state(task, jax.random.key(0), mesh).params
    retrieval, food = task.evaluators
    metrics, _ = retrieval.evaluate(params, str(tmp_path))
    n_test = len(test_ids)
    assert metrics["retrieval/protocol"]["bag_sizes_adapted_to_split"] == {"1000": n_test}
    assert np.isfinite(metrics["retrieval/loglik/bag5/r2i/medR"])
    assert np.isfinite(metrics[f"retrieval/loglik/bag{n_test}/r2i/medR"])
    _, figures = food.evaluate(params, str(tmp_path))
    with open(figures[1], "rb") as f:  # a gallery: images decoded from the shards
        assert f.read(8) == PNG


@requires_minilm
def test_recipe_task_reads_only_declared_keys(cache_dir, strict_config_get):
    for arg in ("smoke", "smoke,variant=isometry"):
        TASKS["ivae_recipe"](_config(cache_dir, arg))
    assert "linear" in strict_config_get  # the shared IVAEModel's reads were checked


@requires_minilm
def test_isometry_ablation_embeds_the_target_alone(cache_dir):
    config = _config(cache_dir, "smoke,variant=isometry")
    task = TASKS[config.task](config)
    params = task.init_fn(jax.random.key(0))
    batch = {k: v[:8] for k, v in task.train_arrays.items()}
    ctx = StepContext(
        step=jnp.zeros((), jnp.int32),
        epoch=jnp.zeros((), jnp.int32),
        key=jax.random.key(1),
        carry={},
    )
    loss, aux = task.phases[0].loss_fn(params, batch, ctx)
    assert np.isfinite(loss) and "isometry_penalty" in aux
    out = task.predict_fn(params, batch)
    assert out["z"].shape == out["mean"].shape == out["logvar"].shape == (8, 4)


def test_head_inputs_whiten_the_train_target():
    rng = np.random.default_rng(0)
    n = 500
    feats = rf.RecipeFeatures(
        ids=np.arange(n).astype(str),
        image=rng.normal(size=(n, 6)) * 3 + 1,
        recipe=rng.normal(size=(n, 10)) @ rng.normal(size=(10, 10)),
        titles=np.full(n, ""),
        factors=np.zeros((n, 0)),
        factor_names=[],
        image_refs=np.full(n, ""),
    )
    inputs = task_lib.HeadInputs.fit(feats, "image", target_dim=4)
    arr = inputs(feats)
    assert arr["x"].shape == (n, 6) and arr["y"].shape == (n, 4)
    np.testing.assert_allclose(arr["x"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.cov(arr["y"].T), np.eye(4), atol=1e-4)
    # The query-predicted basis: an orthogonal rotation of the same whitened coordinates.
    cca = task_lib.HeadInputs.fit(feats, "image", target_dim=4, basis="cca")(feats)
    np.testing.assert_allclose(np.cov(cca["y"].T), np.eye(4), atol=1e-4)
    with pytest.raises(ValueError, match="config.model.target_basis"):
        task_lib.HeadInputs.fit(feats, "image", target_dim=4, basis="ica")
    with pytest.raises(ValueError, match="config.model.target_ridge must be >= 0, got -1"):
        task_lib.HeadInputs.fit(feats, "image", target_dim=4, basis="cca", ridge=-1.0)
    flipped = task_lib.HeadInputs.fit(feats, "recipe", target_dim=0)(feats)
    assert flipped["x"].shape == (n, 10) and flipped["y"].shape == (n, 6)
    with pytest.raises(ValueError, match="target_dim=11"):
        task_lib.HeadInputs.fit(feats, "image", target_dim=11)


@pytest.mark.parametrize(
    "overrides,pattern",
    [
        ({"data.source": "root"}, "config.data.root is empty"),
        ({"data.source": "nope"}, "config.data.source must be one of"),
        ({"model.variant": "ivae"}, "embedding of the target alone"),
        ({"model.query": "text"}, "config.model.query must be one of"),
        ({"data.source": "features", "data.features_path": "x.npz"}, "must contain '{split}'"),
    ],
)
def test_config_errors_name_the_key(overrides, pattern, tmp_path):
    with pytest.raises(ValueError, match=pattern):
        TASKS["ivae_recipe"](_config(str(tmp_path), **overrides))


@pytest.mark.slow
@requires_minilm
def test_smoke_with_pretrained_minilm(tmp_path):
    config = _config(
        str(tmp_path / "cache"),
        **{"model.text_tower.random_init": False, "total_steps": 20},
    )
    out = loop.train_and_evaluate(build_task(config), config, str(tmp_path / "run"))
    assert np.isfinite(out["train/loss"])
    feats = rf.load_recipe_features(config.data, config.model)["test"]
    assert feats.recipe.shape[1] == 384


def test_retrieval_bags_adapt_to_a_small_split(caplog):
    """A split smaller than every bag size is ranked in one bag of all its pairs (with a
    warning), not silently skipped: `eval step N:` used to print nothing."""
    from jaxmr.tasks.ivae.recipe_evaluators import RetrievalEvaluator

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3)).astype(np.float32)

    def predict(params, batch):  # the recipe side equals the image side: perfect ranking
        return {"z": batch["y"], "mean": batch["x"], "logvar": jnp.zeros_like(batch["x"])}

    with caplog.at_level("WARNING", logger="jaxmr.tasks.ivae.recipe_evaluators"):
        ev = RetrievalEvaluator(
            "retrieval", predict, {"x": x, "y": x}, query="image", every_steps=1,
            bag_sizes=(10, 1000, 10000), scores=("cosine",),
        )  # fmt: skip
    (said,) = [r.getMessage() for r in caplog.records]
    assert "30 pairs" in said and "1000, 10000" in said and "bag30" in said
    out = ev.run({})
    assert set(out) == {f"cosine/{b}/{d}/{m}" for b in ("bag10", "bag30") for d in ("i2r", "r2i")
                        for m in ("R@1", "R@5", "R@10", "medR")}  # fmt: skip
    assert out["cosine/bag30/i2r/R@1"] == 100.0 and out["cosine/bag30/r2i/medR"] == 1.0
    metrics, _ = ev.evaluate({}, "")
    protocol = metrics["retrieval/protocol"]
    assert protocol["bag_sizes"] == [10, 30]
    assert protocol["bag_sizes_requested"] == [10, 1000, 10000]
    assert protocol["bag_sizes_adapted_to_split"] == {"1000": 30, "10000": 30}


def test_cca_rotation_puts_the_query_predicted_direction_first():
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=(n, 5))
    y = rng.normal(size=(n, 4))
    u = np.array([0.6, 0.0, -0.8, 0.0])  # y along u is predicted by x[:, 0], strongly
    v = np.array([0.0, 1.0, 0.0, 0.0])  # y along v by x[:, 1], weakly
    y += np.outer(3.0 * x[:, 0], u) + np.outer(1.0 * x[:, 1], v)
    y = (y - y.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(y.T)).T)  # whitened
    rot = task_lib.cca_rotation(x, y, ridge=1e-3)
    np.testing.assert_allclose(rot.T @ rot, np.eye(4), atol=1e-10)
    z = y @ rot
    r = np.abs(np.corrcoef(np.c_[x[:, :2], z].T)[:2, 2:])
    assert r[0, 0] > 0.9 and r[1, 1] > 0.6  # first: the strong direction, second: the weak
    assert r[0, 1:].max() < 0.1 and r[1, [0, 2, 3]].max() < 0.1
