"""The Recipe1M feature cache: file round trip, cache keys, and what a run is told.

Encoding through the towers end to end is exercised by tests/tasks/test_ivae_recipe.py, which
shares one encoded fixture across its tests.
"""

import os

import numpy as np

from configs import ivae_recipe
from jaxmr.data import recipe_features as rf
from jaxmr.data.recipe1m_fixture import make_recipe1m_fixture
from tests.conftest import requires_minilm


def _config(cache_dir, **overrides):
    config = ivae_recipe.get_config("smoke")
    config.data.cache_dir = str(cache_dir)
    config.update_from_flattened_dict(overrides)
    return config


def test_features_round_trip_through_the_cache_file(tmp_path):
    feats = rf.RecipeFeatures(
        ids=np.array(["a1", "b2", "c3"]),
        image=np.arange(6, dtype=np.float32).reshape(3, 2),
        recipe=np.arange(9, dtype=np.float32).reshape(3, 3) / 7,
        titles=np.array(["soup", "", "green salad"]),
        factors=np.array([[0.5, np.nan], [1.0, 2.0], [np.nan, 0.0]]),
        factor_names=["greenness", rf.PLANTED[0]],
        image_refs=np.array(["x.jpg", "tfds:4", ""]),
    )
    path = str(tmp_path / "train.npz")
    feats.save(path)
    assert os.listdir(tmp_path) == ["train.npz"]  # the temporary file was renamed
    back = rf.RecipeFeatures.load(path)
    assert len(back) == 3 and back.factor_names == ["greenness", rf.PLANTED[0]]
    for name in ("ids", "image", "recipe", "titles", "factors", "image_refs"):
        np.testing.assert_array_equal(getattr(back, name), getattr(feats, name), err_msg=name)
    assert back.image.dtype == np.float32 and back.factors.dtype == np.float64


def test_cache_file_is_keyed_by_data_and_towers(tmp_path):
    config = _config(tmp_path)
    path = rf.feature_cache_file(config.data, config.model, "test")
    assert path.startswith(str(tmp_path / "features" / "fixture-")) and path.endswith("/test.npz")
    assert rf.feature_cache_file(config.data, config.model, "test") == path  # stable
    assert rf.feature_cache_file(config.data, config.model, "train").endswith("/train.npz")
    for key, value in [
        ("model.text_tower.seed", 1),
        ("model.image_tower.seed", 1),
        ("model.text_tower.max_length", 32),
        ("model.text_tower.fields", ("title",)),
        ("data.image_size", 16),
        ("data.fixture.n", 60),
        ("data.max_recipes", 10),
    ]:
        other = _config(tmp_path, **{key: value})
        assert rf.feature_cache_file(other.data, other.model, "test") != path, key
    other = _config(tmp_path, **{"data.encode_batch_size": 8})  # does not change features
    assert rf.feature_cache_file(other.data, other.model, "test") == path


@requires_minilm
def test_cache_reads_and_writes_are_announced(tmp_path, capsys):
    cache = tmp_path / "cache"
    config = _config(cache, **{"data.fixture.n": 60})
    rf.load_recipe_features(config.data, config.model)
    out = capsys.readouterr().out
    assert f"writing the Recipe1M fixture to the cache {cache}/fixture-v2-n60" in out
    written = [ln for ln in out.splitlines() if ln.startswith("cached ")]
    assert len(written) == 2 and all(str(cache / "features") in ln for ln in written), out
    assert all("--config.data.cache_dir=DIR" in ln for ln in written)
    rf.load_recipe_features(config.data, config.model)
    again = capsys.readouterr().out.splitlines()
    assert [ln.split(" features from the cache ")[0] for ln in again] == ["train", "test"]


def test_recipes_dropped_for_no_image_are_reported_at_the_default_level(tmp_path, caplog):
    config = _config(tmp_path, **{"data.fixture.n": 30, "data.fixture.defects": True})
    info = make_recipe1m_fixture(tmp_path / "probe", n=30, seed=0, defects=True)  # same draw
    said = {}
    for split in ("train", "val", "test"):
        caplog.clear()
        with caplog.at_level("WARNING"):  # train.py's and eval.py's console level
            kept = [rec["id"] for rec, _, _ in rf._iter_items(config.data, split)]
        (msg,) = [r.getMessage() for r in caplog.records if r.name == rf.logger.name]
        said[split] = msg
        assert kept and msg.startswith(f"recipe1m {split}: read ")
    dropped = info.no_image_ids
    counts = [int(m.split("no_images: ")[1].split()[0]) for m in said.values() if "no_images" in m]
    assert sum(counts) == len(dropped) == 2
    assert all(any(i in m for m in said.values()) for i in dropped)  # named by id
