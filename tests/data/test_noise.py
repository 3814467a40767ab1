"""Noise injection: both published conventions, saved indices, field-style files."""

import logging

import numpy as np
import pytest

from jaxmr.data.noise import (
    apply_noise_index,
    caption_level_noise,
    image_level_noise,
    make_or_load_noise,
)

N_IMG, CPI = 2000, 5
CAP2IMG = np.arange(N_IMG * CPI) // CPI


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.4, 0.6])
def test_caption_level_mismatch_fraction(ratio):
    t2i = caption_level_noise(CAP2IMG, ratio, seed=1)
    p = apply_noise_index(t2i, CAP2IMG, N_IMG)
    assert p.convention == "caption"
    n_caps = len(CAP2IMG)
    # Exactly int(ratio * n_caps) captions were shuffled; chance re-matches (expected
    # 1 + 4 ratio in total, see the module doc) keep a few of them clean.
    moved = int(ratio * n_caps)
    assert moved - 15 <= p.is_noisy.sum() <= moved
    assert p.realised_ratio == pytest.approx(ratio, abs=15 / n_caps)
    # The multiset of images is kept: shuffling only permutes the chosen captions' images.
    np.testing.assert_array_equal(np.sort(t2i), CAP2IMG)
    # Noisy captions are scattered: images are not moved as a whole.
    if ratio:
        per_image = p.is_noisy.reshape(N_IMG, CPI).sum(1)
        assert np.any((per_image > 0) & (per_image < CPI))


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6])
def test_image_level_moves_all_captions_of_an_image(ratio):
    perm = image_level_noise(N_IMG, ratio, seed=2)
    np.testing.assert_array_equal(np.sort(perm), np.arange(N_IMG))  # a permutation
    p = apply_noise_index(perm, CAP2IMG, N_IMG)
    assert p.convention == "image"
    per_image = p.is_noisy.reshape(N_IMG, CPI)
    assert np.all(per_image.all(1) | ~per_image.any(1))  # all 5 captions move together
    moved = int((perm != np.arange(N_IMG)).sum())
    # int(ratio * n_img) images chosen; a random permutation of them fixes ~1 in place.
    assert int(ratio * N_IMG) - 6 <= moved <= int(ratio * N_IMG)
    assert p.realised_ratio == pytest.approx(moved / N_IMG)
    np.testing.assert_array_equal(p.noisy_cap2img, perm[CAP2IMG])


def test_seeded_and_saved_index_reloads_to_the_same_pairing(tmp_path, caplog):
    path = tmp_path / "run" / "f30k_precomp_0.4.npy"
    a = make_or_load_noise(path, CAP2IMG, N_IMG, ratio=0.4, convention="caption", seed=3)
    assert path.exists()
    with caplog.at_level(logging.INFO, logger="jaxmr.data.noise"):
        b = make_or_load_noise(path, CAP2IMG, N_IMG, ratio=0.4, convention="caption", seed=99)
    assert "loaded caption-level" in caplog.text
    np.testing.assert_array_equal(a.noisy_cap2img, b.noisy_cap2img)
    np.testing.assert_array_equal(a.is_noisy, b.is_noisy)
    c = caption_level_noise(CAP2IMG, 0.4, seed=3)
    np.testing.assert_array_equal(a.index, c)  # seeded
    assert not np.array_equal(c, caption_level_noise(CAP2IMG, 0.4, seed=4))
    img = make_or_load_noise(
        tmp_path / "img.npy", CAP2IMG, N_IMG, ratio=0.2, convention="image", seed=0
    )
    again = make_or_load_noise(
        tmp_path / "img.npy", CAP2IMG, N_IMG, ratio=0.2, convention="image", seed=1
    )
    assert img.convention == again.convention == "image"
    np.testing.assert_array_equal(img.noisy_cap2img, again.noisy_cap2img)


def test_field_style_files_are_detected_by_length(tmp_path, caplog):
    # RCL ships noise_inx_{ratio}.npy: int64 image permutations of length n_img.
    rng = np.random.default_rng(0)
    perm = np.arange(N_IMG)
    sub = rng.permutation(N_IMG)[:400]
    perm[sub] = rng.permutation(sub)
    np.save(tmp_path / "noise_inx_0.2.npy", perm)
    with caplog.at_level(logging.INFO, logger="jaxmr.data.noise"):
        p = make_or_load_noise(
            tmp_path / "noise_inx_0.2.npy", CAP2IMG, N_IMG, ratio=0.2, convention="caption", seed=0
        )
    assert p.convention == "image"
    assert "loaded image-level" in caplog.text and "config asks for caption-level" in caplog.text
    # NCR saves t2i arrays of length n_caps.
    t2i = caption_level_noise(CAP2IMG, 0.2, seed=5)
    np.save(tmp_path / "f30k_precomp_0.2.npy", t2i)
    q = make_or_load_noise(
        tmp_path / "f30k_precomp_0.2.npy", CAP2IMG, N_IMG, ratio=0.2, convention="caption", seed=0
    )
    assert q.convention == "caption"
    np.testing.assert_array_equal(q.noisy_cap2img, t2i)


def test_wrong_files_are_clear_errors(tmp_path):
    np.save(tmp_path / "short.npy", np.arange(7))
    with pytest.raises(
        ValueError, match=r"short\.npy: length 7 fits neither .*n_caps=10000.*n_img=2000"
    ):
        make_or_load_noise(
            tmp_path / "short.npy", CAP2IMG, N_IMG, ratio=0.2, convention="caption", seed=0
        )
    with pytest.raises(ValueError, match=r"\[0, 2000\)"):
        apply_noise_index(np.full(N_IMG, N_IMG), CAP2IMG, N_IMG)
    with pytest.raises(ValueError, match="1-D integer"):
        apply_noise_index(np.zeros(N_IMG), CAP2IMG, N_IMG)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        caption_level_noise(CAP2IMG, 1.0, seed=0)
    with pytest.raises(ValueError, match="convention"):
        make_or_load_noise(tmp_path / "x.npy", CAP2IMG, N_IMG, ratio=0.2, convention="pair", seed=0)


def test_one_caption_per_image_conventions_coincide(tmp_path):
    cap2img = np.arange(50)
    p = make_or_load_noise(tmp_path / "cc.npy", cap2img, 50, ratio=0.4, convention="image", seed=0)
    assert p.convention == "image"
    assert 18 <= p.is_noisy.sum() <= 20
