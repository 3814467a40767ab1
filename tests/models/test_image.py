"""Tests for the Flax ResNet image tower (tiny random config, save/load round trip)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmr.models import image


@pytest.fixture(scope="module")
def tower():
    return image.load_image_tower(random_init=True, image_size=16, seed=0)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)


def test_random_init_forward(tower, images, caplog):
    feats = image.resnet_features(tower, images, batch_size=3)
    assert feats.shape == (3, 16) and tower.dim == 16
    assert np.all(np.isfinite(feats)) and feats.std() > 0
    # Per-image: row i does not depend on the other images in eval mode.
    one = image.resnet_features(tower, images[1:2], batch_size=3)
    np.testing.assert_allclose(one[0], feats[1], atol=1e-5)
    with caplog.at_level("WARNING", logger="jaxmr.models.image"):
        other = image.load_image_tower(random_init=True, image_size=16, seed=1)
    # It says, at the default log level, which network it built: no silent random features.
    (said,) = [r.getMessage() for r in caplog.records if "random-init ResNet" in r.getMessage()]
    assert "NO pretrained weights" in said and "depths [1, 1], widths [8, 16]" in said
    assert "seed 1" in said and "16 px input -> 16-d" in said
    assert not np.allclose(image.resnet_features(other, images, batch_size=3), feats)


def test_preprocess_normalises_with_imagenet_stats(tower):
    x = np.full((1, 2, 2, 3), 255, np.uint8)
    out = np.asarray(tower.preprocess(x))[0, 0, 0]
    want = (1.0 - np.array(image.IMAGENET_MEAN)) / np.array(image.IMAGENET_STD)
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_save_and_load_from_local_folder(tower, images, tmp_path):
    tower.save(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]})
    )
    custom = image.load_image_tower(tmp_path)
    assert custom.mean == (0.5, 0.5, 0.5) and custom.std == (0.25, 0.25, 0.25)
    (tmp_path / "preprocessor_config.json").unlink()
    loaded = image.load_image_tower(tmp_path)
    assert loaded.mean == image.IMAGENET_MEAN
    np.testing.assert_allclose(
        image.resnet_features(loaded, images, batch_size=3),
        image.resnet_features(tower, images, batch_size=3),
        atol=1e-5,
    )


def _grad_total(t, images):
    g = jax.jit(jax.grad(lambda v: jnp.sum(t.embed(v, images) ** 2)))(t.variables)
    return sum(float(jnp.abs(x).sum()) for x in jax.tree_util.tree_leaves(g["params"]))


def test_frozen_and_trainable_gradients(tower, images):
    assert not tower.trainable and _grad_total(tower, images) == 0.0
    with pytest.raises(ValueError, match="trainable tower"):
        tower.embed(tower.variables, images, train=True)
    train = image.load_image_tower(random_init=True, image_size=16, trainable=True)
    assert _grad_total(train, images) > 0
    feats, stats = jax.jit(lambda v, x: train.embed(v, x, train=True))(train.variables, images)
    assert feats.shape == (3, 16)
    old = jax.tree_util.tree_leaves(train.variables["batch_stats"])
    new = jax.tree_util.tree_leaves(stats)
    assert len(old) == len(new) and any(
        not np.allclose(a, b) for a, b in zip(old, new, strict=True)
    )


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="random_init=True explicitly"):
        image.load_image_tower()
    with pytest.raises(ValueError, match="not both"):
        image.load_image_tower(tmp_path, random_init=True)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no config.json"):
        image.load_image_tower(tmp_path)


def test_tiny_config_overrides():
    cfg = image.tiny_resnet_config(hidden_sizes=[4, 12])
    assert cfg.hidden_sizes == [4, 12] and cfg.layer_type == "basic"
