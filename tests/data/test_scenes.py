"""Tests for the offline scenes benchmark: layout, factors, captions, tokenisation, caching."""

import json
import os

import numpy as np
import pytest

from jaxmr.data import scene_captions as sc
from jaxmr.data import scenes
from jaxmr.data.region_features import IMAGE_SIZE, region_features


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    return scenes.ensure_scenes(tmp_path_factory.mktemp("scenes"), size="smoke", seed=3,
                                feature_dim=32)  # fmt: skip


def _split(root, split):
    folder = os.path.join(root, "scenes_precomp")
    ims = np.load(os.path.join(folder, f"{split}_ims.npy"), mmap_mode="r")
    with open(os.path.join(folder, f"{split}_caps.txt")) as f:
        caps = f.read().splitlines()
    return ims, caps, scenes.load_scene_factors(root, split)


@pytest.mark.parametrize("split", scenes.SPLITS)
def test_layout_shapes_and_factor_files(smoke_root, split):
    ims, caps, f = _split(smoke_root, split)
    n = scenes.SIZES["smoke"][split]
    assert ims.shape == (n, 36, 32) and ims.dtype == np.float32
    assert np.all(np.isfinite(ims)) and ims.min() >= 0.0
    assert len(caps) == 5 * n
    assert f["shared"].shape == (n, 5) and f["shared"].dtype == np.int32
    assert tuple(f["shared_names"]) == scenes.SHARED_NAMES
    assert f["image_exclusive"].shape == (n, len(scenes.IMAGE_EXCLUSIVE_NAMES))
    assert f["text_exclusive"].shape == (5 * n, len(sc.TEXT_EXCLUSIVE_NAMES))
    for j, card in enumerate(f["shared_cardinalities"]):
        assert f["shared"][:, j].min() >= 0 and f["shared"][:, j].max() < card
    for j, card in enumerate(f["text_exclusive_cardinalities"]):
        assert f["text_exclusive"][:, j].max() < card


def test_captions_describe_their_image_shared_factors(smoke_root):
    _, caps, f = _split(smoke_root, "dev")
    shared = np.repeat(f["shared"], 5, axis=0)
    for cap, s, t in zip(caps, shared, f["text_exclusive"], strict=True):
        assert cap == sc.render_caption(s, t)
        assert sc.KIND_WORDS[s[0]][t[2]] in cap
        assert sc.COLOUR_WORDS[s[2]][t[4]] in cap
        assert sc.POSITION_WORDS[s[3]][s[4]][t[5]] in cap
        assert sc.CONTEXTS[t[1]] in cap


def test_hand_written_caption_and_tokens():
    # kind=cross, size=large, colour=blue, row=bottom, column=left; template 4, context 1,
    # synonyms (plus sign, big, azure, at the lower left), article "one".
    cap = sc.render_caption(np.array([3, 1, 4, 2, 0]), np.array([4, 1, 1, 1, 1, 1, 1]))
    assert cap == "as seen from afar, one azure plus sign, quite big, at the lower left."
    assert sc.tokenize_caption(cap) == [
        "as", "seen", "from", "afar", ",", "one", "azure", "plus", "sign", ",", "quite",
        "big", ",", "at", "the", "lower", "left", ".",
    ]  # fmt: skip
    cap = sc.render_caption(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 0, 0, 0, 0, 0]))
    assert cap == "a small red square in the centre, in the early morning."


def test_tokenisation_equals_nltk_on_every_caption(smoke_root):
    nltk = pytest.importorskip("nltk")
    _, caps, _ = _split(smoke_root, "train")
    for cap in caps:
        try:
            expected = nltk.word_tokenize(cap.lower())
        except LookupError:  # punkt not installed: one sentence, so no sentence split needed
            expected = nltk.word_tokenize(cap.lower(), preserve_line=True)
        assert sc.tokenize_caption(cap) == expected, cap


def test_captions_are_plain_lower_case_sentences(smoke_root):
    _, caps, _ = _split(smoke_root, "train")
    allowed = set("abcdefghijklmnopqrstuvwxyz ,.")
    for cap in caps:
        assert set(cap) <= allowed and cap.endswith(".") and cap.count(".") == 1
        assert "  " not in cap and " ," not in cap


def test_vocab_json_layout_and_coverage(smoke_root):
    with open(os.path.join(smoke_root, "vocab", "scenes_precomp_vocab.json")) as f:
        vocab = json.load(f)
    assert [vocab["idx2word"][str(i)] for i in range(4)] == list(sc.SPECIAL_TOKENS)
    assert vocab["idx"] == len(vocab["word2idx"]) == len(vocab["idx2word"])
    assert all(vocab["idx2word"][str(i)] == w for w, i in vocab["word2idx"].items())
    for split in scenes.SPLITS:
        _, caps, _ = _split(smoke_root, split)
        assert {t for c in caps for t in sc.tokenize_caption(c)} <= set(vocab["word2idx"])


def test_ensure_is_idempotent_deterministic_and_regenerates_on_new_params(tmp_path):
    root = scenes.ensure_scenes(tmp_path, size="smoke", seed=1, feature_dim=16)
    ims_path = os.path.join(root, "scenes_precomp", "test_ims.npy")
    first = np.load(ims_path)
    mtime = os.path.getmtime(ims_path)
    assert scenes.ensure_scenes(tmp_path, size="smoke", seed=1, feature_dim=16) == root
    assert os.path.getmtime(ims_path) == mtime  # reused, not rewritten
    other = scenes.write_scenes(tmp_path / "again", size="smoke", seed=1, feature_dim=16)
    np.testing.assert_array_equal(np.load(os.path.join(other, "scenes_precomp",
                                                       "test_ims.npy")), first)  # fmt: skip
    # A stale marker (older generator version) makes ensure_scenes regenerate in place.
    marker = os.path.join(root, "scenes_precomp", scenes.MARKER)
    with open(marker) as f:
        params = json.load(f)
    params["generator_version"] = -1
    with open(marker, "w") as f:
        json.dump(params, f)
    assert scenes.ensure_scenes(tmp_path, size="smoke", seed=1, feature_dim=16) == root
    with open(marker) as f:
        assert json.load(f)["generator_version"] == scenes.GENERATOR_VERSION
    np.testing.assert_array_equal(np.load(ims_path), first)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".scenes-")]


def test_seeds_and_splits_differ(tmp_path):
    a = scenes.write_scenes(tmp_path / "a", size="smoke", seed=0, feature_dim=8)
    b = scenes.write_scenes(tmp_path / "b", size="smoke", seed=1, feature_dim=8)
    fa, fb = scenes.load_scene_factors(a, "test"), scenes.load_scene_factors(b, "test")
    assert not np.array_equal(fa["shared"], fb["shared"])
    assert not np.array_equal(fa["shared"], scenes.load_scene_factors(a, "dev")["shared"])


def test_unknown_size_and_missing_split_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown scenes size 'huge'"):
        scenes.ensure_scenes(tmp_path, size="huge")
    with pytest.raises(FileNotFoundError, match="test_factors.npz"):
        scenes.load_scene_factors(tmp_path, "test")


def test_rendering_background_dominates_and_object_is_drawn():
    rng = np.random.default_rng(0)
    shared, excl = scenes.sample_scene_factors(8, rng=rng)
    excl[:, scenes.IMAGE_EXCLUSIVE_NAMES.index("noise_std")] = 0.0
    excl[:, scenes.IMAGE_EXCLUSIVE_NAMES.index("texture_contrast")] = 0.0
    images = scenes.render_scenes(shared, excl, rng=rng)
    assert images.shape == (8, IMAGE_SIZE, IMAGE_SIZE, 3)
    bg = excl[:, :3]
    at_bg = np.all(np.abs(images - bg[:, None, None, :]) < 1e-5, axis=-1).mean(axis=(1, 2))
    assert np.all(at_bg > 0.65)  # background colour covers most pixels
    # The object's pixel at its (jittered) centre has the object colour, not the background.
    names = scenes.IMAGE_EXCLUSIVE_NAMES
    for i in range(8):
        cx = [0.25, 0.5, 0.75][shared[i, 4]] + 0.06 * excl[i, names.index("jitter_x")]
        cy = [0.25, 0.5, 0.75][shared[i, 3]] + 0.06 * excl[i, names.index("jitter_y")]
        px = images[i, int(cy * IMAGE_SIZE), int(cx * IMAGE_SIZE)]
        assert np.abs(px - bg[i]).max() > 0.05


def test_region_features_shape_and_input_check():
    images = np.random.default_rng(0).uniform(size=(3, IMAGE_SIZE, IMAGE_SIZE, 3))
    feats = region_features(images, feature_dim=8)
    assert feats.shape == (3, 36, 8) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, region_features(images, feature_dim=8))
    with pytest.raises(ValueError, match=r"\[N, 48, 48, 3\]"):
        region_features(np.zeros((2, 32, 32, 3)))
