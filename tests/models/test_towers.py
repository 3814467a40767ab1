"""Frozen towers named by a config: the key that names them, the error without an image
tower, and one load per process."""

import pytest

from configs import ivae_recipe
from jaxmr.models import towers
from tests.conftest import requires_minilm


def _model_cfg(**overrides):
    config = ivae_recipe.get_config("smoke")
    config.update_from_flattened_dict(overrides)
    return config.model


def _key(model_cfg, image_size=32):
    return towers.tower_key(model_cfg.text_tower, model_cfg.image_tower, image_size=image_size)


def test_tower_key_names_what_determines_the_features():
    key = _key(_model_cfg())
    assert key == {
        "text": {
            "random_init": True,
            "seed": 0,
            "max_length": 64,
            "fields": ["title", "ingredients", "instructions"],
        },
        "image": {"random_init": True, "seed": 0, "image_size": 32},
    }
    assert _key(_model_cfg(), image_size=16)["image"]["image_size"] == 16
    assert _key(_model_cfg(**{"model.text_tower.seed": 3}))["text"]["seed"] == 3
    path = _key(
        _model_cfg(**{"model.image_tower.random_init": False, "model.image_tower.path": "~/resnet"})
    )["image"]
    assert path["path"].endswith("/resnet") and not path["path"].startswith("~")
    assert "seed" not in path


def test_image_tower_path_is_required_without_random_init():
    model_cfg = _model_cfg(**{"model.image_tower.random_init": False})
    with pytest.raises(ValueError, match="image_tower.path is empty"):
        towers.load_towers(model_cfg.text_tower, model_cfg.image_tower, image_size=32)


@requires_minilm
def test_towers_are_loaded_once_per_process():
    model_cfg = _model_cfg()
    first = towers.load_towers(model_cfg.text_tower, model_cfg.image_tower, image_size=32)
    again = towers.load_towers(model_cfg.text_tower, model_cfg.image_tower, image_size=32)
    assert first[0] is again[0] and first[1] is again[1]
    other = towers.load_towers(model_cfg.text_tower, model_cfg.image_tower, image_size=16)
    assert other[0] is first[0] and other[1] is not first[1]  # the image size names the tower
