"""The frozen MiniLM text tower as a retrieval text encoder (`model.text_encoder="minilm"`):
caption embeddings computed once per caption and cached, then a trainable projection."""

import os

import ml_collections
import numpy as np
import pytest

from tests.conftest import requires_minilm

pytestmark = requires_minilm

CAPTIONS = [
    "a small red circle at the top left .",
    "two words",
    "a large blue square in the middle of a striped background , seen on a sunny morning",
    "tomato soup",
    "a bowl of vegetable soup",
    "chocolate cake",
]


def _tower_cfg(random_init=True):
    return ml_collections.ConfigDict(
        dict(path="minilm", random_init=random_init, seed=0, max_length=32)
    )


def test_bucketed_encoding_equals_one_caption_at_a_time():
    from jaxmr.tasks.retrieval.text_features import encode_captions, load_frozen_tower

    tower = load_frozen_tower(_tower_cfg())
    got = encode_captions(tower, CAPTIONS, batch_size=4)
    # The tower's own path: every caption padded to max_length, in input order.
    ref = tower.encode(CAPTIONS, batch_size=8)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    shuffled = encode_captions(tower, CAPTIONS[::-1], batch_size=4)
    np.testing.assert_allclose(shuffled[::-1], got, atol=2e-5)


def test_features_are_cached_per_caption_list(tmp_path, monkeypatch):
    from jaxmr.tasks.retrieval import text_features

    first = text_features.caption_features(CAPTIONS, _tower_cfg(), cache_dir=str(tmp_path))
    files = os.listdir(tmp_path / "features")
    assert len(files) == 1 and first.shape == (6, 32)

    def boom(*a, **k):
        raise AssertionError("re-encoded cached captions")

    monkeypatch.setattr(text_features, "encode_captions", boom)
    again = text_features.caption_features(CAPTIONS, _tower_cfg(), cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again, first)
    with pytest.raises(AssertionError, match="re-encoded"):  # other captions: a new file
        text_features.caption_features(CAPTIONS[:3], _tower_cfg(), cache_dir=str(tmp_path))


@pytest.mark.slow  # loads the pretrained MiniLM (~20 s on 2 busy cores)
def test_minilm_caption_embeddings_are_semantic():
    from jaxmr.tasks.retrieval.text_features import encode_captions, load_frozen_tower

    tower = load_frozen_tower(_tower_cfg(random_init=False))
    e = encode_captions(tower, CAPTIONS[3:], batch_size=4)
    assert e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(e, tower.encode(CAPTIONS[3:], batch_size=4), atol=2e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_ncr_trains_on_frozen_tower_features(tmp_path):
    from configs import ncr_synthetic
    from jaxmr.tasks import build_task
    from jaxmr.train import loop

    config = ncr_synthetic.get_config("smoke,text=minilm")
    config.data.cache_dir = str(tmp_path / "cache")
    config.num_devices = 1
    config.model.text_tower.random_init = True  # tiny random BERT: seconds on CPU
    config.total_steps = 40  # warm-up epoch (31 steps), then the split
    task = build_task(config)
    data = task.info["data"]
    assert data.train.tokens.dtype == np.float32 and data.train.tokens.shape[1] == 32
    assert len(data.train.tokens) == len(data.train.captions)
    out = loop.train_and_evaluate(task, config, str(tmp_path / "run"))
    assert out["step"] == 40 and np.isfinite(out["dev/rsum"])
    with pytest.raises(ValueError, match="DisNCL"):
        from configs import disncl_synthetic

        cfg = disncl_synthetic.get_config("smoke")
        cfg.data.cache_dir = config.data.cache_dir
        cfg.model.text_encoder = "minilm"
        cfg.model.text_tower = config.model.text_tower
        build_task(cfg)
