"""Synthetic benchmark, the .npz reader and the step-addressable loader."""

import dataclasses

import numpy as np
import pytest

from jaxmr.data.arrays import ArrayLoader, load_paired_npz
from jaxmr.data.synthetic import (
    SyntheticSpec,
    make_synthetic,
    make_synthetic_with_mixing,
    mixing_matrix,
    random_mlp_mixing,
    unmix,
)

SMALL = SyntheticSpec(
    num_segments=6, points_per_segment=50, latent_dim=3, target_dim=4, query_dim=7, seed=3
)


def test_shapes_and_determinism():
    a, b = make_synthetic(SMALL), make_synthetic(SMALL)
    assert a["x"].shape == (300, 7) and a["y"].shape == (300, 4) and a["s"].shape == (300, 3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = make_synthetic(dataclasses.replace(SMALL, seed=4))
    assert not np.allclose(a["y"], c["y"])
    assert a["y"].dtype == np.float32


def test_sources_are_segment_modulated():
    data = make_synthetic(dataclasses.replace(SMALL, points_per_segment=4000))
    for m in range(6):
        std = data["s"][data["segment"] == m].std(0)
        np.testing.assert_allclose(std, data["std"][m], rtol=0.06)
    assert np.all((data["std"] >= 0.5) & (data["std"] <= 3.0))


def test_onehot_query_and_uncentered():
    data = make_synthetic(dataclasses.replace(SMALL, query_kind="onehot", centered=False))
    np.testing.assert_array_equal(data["x"].argmax(1), data["segment"])
    seg_means = np.stack([data["s"][data["segment"] == m].mean(0) for m in range(6)])
    assert seg_means.std(0).min() > 1.0  # per-segment means U(-5, 5), not all zero


def test_mixing_matrix_unit_columns_and_well_conditioned():
    rng = np.random.default_rng(0)
    a = mixing_matrix(rng, 5, 5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=0), 1.0, rtol=1e-6)
    conds = np.linalg.cond(rng.uniform(-1, 1, (2000, 5, 5)))
    assert np.linalg.cond(a) < np.percentile(conds, 30)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("target_dim", 2, "target_dim"),
        ("activation", "relu", "activation"),
        ("query_kind", "text", "query_kind"),
        ("num_segments", 1, "num_segments"),
    ],
)
def test_invalid_specs_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(dataclasses.replace(SMALL, **{field: value}))


def test_npz_reader_defaults_and_errors(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, u=np.ones((10, 3)), x=np.zeros((10, 2, 2)), s=np.ones((10, 2)))
    out = load_paired_npz(path)
    assert out["x"].shape == (10, 3) and out["y"].shape == (10, 4) and out["s"].shape == (10, 2)
    with pytest.raises(ValueError, match=r"missing array 'obs'.*\['s', 'u', 'x'\]"):
        load_paired_npz(path, target_key="obs")
    bad = tmp_path / "bad.npz"
    np.savez(bad, u=np.ones((10, 3)), x=np.zeros((9, 2)))
    with pytest.raises(ValueError, match=r"bad.npz: arrays have different lengths"):
        load_paired_npz(bad)
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        load_paired_npz(tmp_path / "nothere.npz")
    nan = tmp_path / "nan.npz"
    np.savez(nan, u=np.full((4, 1), np.nan), x=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        load_paired_npz(nan)


def test_loader_is_a_pure_function_of_step_and_covers_each_epoch():
    arrays = {"a": np.arange(100)[:, None], "b": np.arange(100) * 2}
    loader = ArrayLoader(arrays, batch_size=32, seed=0)
    assert loader.steps_per_epoch == 3
    first = [loader.batch(s)["a"][:, 0] for s in range(3)]
    assert len(np.unique(np.concatenate(first))) == 96  # no repeats within an epoch
    fresh = ArrayLoader(arrays, batch_size=32, seed=0)
    np.testing.assert_array_equal(fresh.batch(4)["a"], loader.batch(4)["a"])
    assert not np.array_equal(loader.batch(0)["a"], loader.batch(3)["a"])  # new permutation
    b = loader.batch(5)
    np.testing.assert_array_equal(b["b"], b["a"][:, 0] * 2)  # rows stay paired
    np.testing.assert_array_equal(b["index"], b["a"][:, 0])


def test_loader_process_slices_tile_the_global_batch_and_extras():
    arrays = {"a": np.arange(64)}
    whole = ArrayLoader(arrays, batch_size=16, seed=1).batch(2)["a"]
    parts = [
        ArrayLoader(arrays, batch_size=16, seed=1, process_index=i, process_count=2).batch(2)["a"]
        for i in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    loader = ArrayLoader(arrays, batch_size=16, seed=1)
    loader.set_per_example("w", np.arange(64) * 10.0)
    b = loader.batch(0)
    np.testing.assert_array_equal(b["w"], b["a"] * 10.0)
    with pytest.raises(ValueError, match="length 3"):
        loader.set_per_example("w", np.ones(3))
    with pytest.raises(ValueError, match="divisible"):
        ArrayLoader(arrays, batch_size=15, seed=0, process_count=2)


def test_repeat_linearity_shares_one_matrix():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((50, 3))
    _, mats = random_mlp_mixing(np.random.default_rng(1), s, 3, 3, np.tanh, repeat=True)
    assert all(m is mats[0] for m in mats)
    _, mats = random_mlp_mixing(np.random.default_rng(1), s, 6, 3, np.tanh, repeat=True)
    assert mats[0].shape == (3, 6) and mats[1] is mats[2] and mats[1].shape == (6, 6)
    _, mats = random_mlp_mixing(np.random.default_rng(1), s, 3, 3, np.tanh)
    assert not np.allclose(mats[0], mats[1])
    spec = SyntheticSpec(num_segments=4, points_per_segment=10, repeat_linearity=True)
    assert make_synthetic(spec)["y"].shape == (40, 5)


@pytest.mark.parametrize(
    "activation,target_dim,repeat",
    [("xtanh", 3, False), ("xtanh", 6, False), ("leaky_relu", 6, True), ("none", 4, False)],
)
def test_unmix_recovers_the_true_factors(activation, target_dim, repeat):
    spec = dataclasses.replace(
        SMALL, activation=activation, target_dim=target_dim, repeat_linearity=repeat
    )
    data, mats = make_synthetic_with_mixing(spec)
    for k, v in make_synthetic(spec).items():  # the same draw as make_synthetic
        np.testing.assert_array_equal(data[k], v)
    assert len(mats) == spec.mixing_layers
    s = unmix(data["y"], mats, activation=activation, slope=spec.slope)
    assert s.shape == data["s"].shape
    # float32 targets through 3 layers (xtanh's inverse amplifies by up to 1/slope = 10)
    np.testing.assert_allclose(s, data["s"], atol=2e-3 if activation == "xtanh" else 1e-4)
    # a wrong inverse is visible: the wrong activation does not recover s
    wrong = "none" if activation != "none" else "xtanh"
    assert np.abs(unmix(data["y"], mats, activation=wrong, slope=0.1) - data["s"]).max() > 0.1
    with pytest.raises(ValueError, match="activation"):
        unmix(data["y"], mats, activation="relu", slope=0.1)
