"""Clean/noisy split quality against hand-computed values."""

import numpy as np
import pytest

from jaxmr.metrics.split import split_quality


def test_hand_computed_split():
    truth = np.array([True, True, True, False, False])
    prob = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
    got = split_quality(truth, clean_prob=prob)
    # predicted clean (> 0.5): 0, 1, 3 -> tp = 2; precision 2/3, recall 2/3
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3) and got["accuracy"] == pytest.approx(3 / 5)
    # AUC: clean/noisy score pairs ordered right: (0.9>0.6,0.1) (0.8>0.6,0.1) (0.3>0.1) = 5/6
    assert got["auc"] == pytest.approx(5 / 6)
    assert got["predicted_clean_fraction"] == 0.6 and got["true_clean_fraction"] == 0.6
    assert split_quality(truth, clean_prob=prob, threshold=0.2)["recall"] == 1.0


def test_predicted_set_and_edge_cases():
    truth = np.array([True, False, True, True])
    got = split_quality(truth, predicted_clean=np.array([True, False, False, True]))
    assert got["precision"] == 1.0 and got["recall"] == pytest.approx(2 / 3)
    assert np.isnan(got["auc"])
    perfect = split_quality(truth, clean_prob=truth.astype(float))
    assert perfect["auc"] == 1.0 and perfect["f1"] == 1.0
    no_noise = split_quality(np.ones(4, bool), clean_prob=np.full(4, 0.9))
    assert np.isnan(no_noise["auc"]) and no_noise["recall"] == 1.0
    nothing = split_quality(truth, clean_prob=np.zeros(4))
    assert np.isnan(nothing["precision"]) and nothing["recall"] == 0.0


def test_errors():
    with pytest.raises(ValueError, match="1-D bool"):
        split_quality(np.array([1, 0]), clean_prob=np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="clean_prob, predicted_clean"):
        split_quality(np.array([True, False]))
    with pytest.raises(ValueError, match="shape"):
        split_quality(np.array([True, False]), clean_prob=np.zeros(3))
