"""Held-out R² probes and semantic recall on constructed fixtures."""

import numpy as np
import pytest

from jaxmr.metrics.factor_probe import heldout_r2
from jaxmr.metrics.semantic_recall import semantic_recall

RNG = np.random.default_rng(0)


def test_codes_that_contain_the_factors_score_near_one():
    factors = RNG.normal(size=(2000, 3))
    mixing = RNG.normal(size=(3, 10))
    codes = factors @ mixing + 0.01 * RNG.normal(size=(2000, 10))
    r2 = heldout_r2(codes, factors, seed=0)
    assert r2.shape == (3,)
    np.testing.assert_array_less(0.99, r2)


def test_independent_codes_score_near_zero():
    factors = RNG.normal(size=(2000, 2))
    codes = RNG.normal(size=(2000, 16))
    r2 = heldout_r2(codes, factors, seed=1)
    np.testing.assert_array_less(np.abs(r2), 0.03)


def test_partial_information_gives_the_explained_share():
    # code = f + noise with var(noise) = var(f): the best linear R² is 1/2.
    f = RNG.normal(size=(20000, 1))
    codes = f + RNG.normal(size=(20000, 1))
    assert heldout_r2(codes, f, seed=0)[0] == pytest.approx(0.5, abs=0.02)


def test_categorical_factor_uses_one_hot_targets():
    labels = RNG.integers(0, 4, size=3000)
    codes = np.eye(4)[labels] + 0.01 * RNG.normal(size=(3000, 4))
    both = np.column_stack([labels, RNG.integers(0, 3, size=3000)])
    r2 = heldout_r2(codes, both, categorical=[True, True], seed=0)
    assert r2[0] > 0.99 and abs(r2[1]) < 0.02
    # As one continuous target the labels 0..3 are a linear function of the one-hot code too.
    assert heldout_r2(codes, labels, seed=0)[0] > 0.99


def test_probe_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(10, 3\) and \(9, 1\)"):
        heldout_r2(np.zeros((10, 3)), np.zeros((9, 1)))
    with pytest.raises(ValueError, match="categorical has 1 entries for 2 factors"):
        heldout_r2(np.zeros((10, 3)), np.zeros((10, 2)), categorical=[True])
    with pytest.raises(ValueError, match="NaN or inf"):
        heldout_r2(np.full((10, 3), np.nan), np.zeros((10, 1)))


def test_semantic_recall_hand_built_matrix():
    # Images 0 and 1 share factors (a); image 2 is (b). Two captions per image.
    img = np.array([[0, 0], [0, 0], [1, 1]])
    cap = np.repeat(img, 2, axis=0)
    sims = np.array(
        [
            [0.0, 0.1, 0.9, 0.2, 0.3, 0.4],  # top-1 caption 2 (image 1, same factors): hit
            [0.0, 0.1, 0.2, 0.3, 0.9, 0.8],  # top-2 are image 2's captions: miss until K=3
            [0.9, 0.8, 0.7, 0.6, 0.1, 0.2],  # image 2's captions ranked last: miss at K<=4
        ]
    )
    out = semantic_recall(sims, img, cap, ks=(1, 3, 5))
    assert out["i2t/sR@1"] == pytest.approx(100 / 3)
    assert out["i2t/sR@3"] == pytest.approx(200 / 3)
    assert out["i2t/sR@5"] == pytest.approx(100.0)
    # t2i over the columns (caption 0: top image 2, a miss), checked against argmax.
    t2i_top1 = [sims[:, j].argmax() for j in range(6)]
    expected = 100 * np.mean([np.all(img[i] == cap[j]) for j, i in enumerate(t2i_top1)])
    assert out["t2i/sR@1"] == pytest.approx(expected)
    assert out["srsum"] == pytest.approx(sum(v for k, v in out.items() if "/sR@" in k))


def test_semantic_recall_is_one_hundred_for_an_oracle_and_errors_on_bad_shapes():
    img = RNG.integers(0, 3, size=(50, 2))
    cap = np.repeat(img, 5, axis=0)
    sims = np.all(img[:, None, :] == cap[None, :, :], axis=-1).astype(float)
    sims += 1e-3 * RNG.uniform(size=sims.shape)
    out = semantic_recall(sims, img, cap)
    assert all(v == pytest.approx(100.0) for k, v in out.items() if k != "srsum")
    with pytest.raises(ValueError, match=r"sims must be \[N_img, N_caps\]"):
        semantic_recall(sims.T, img, cap)
