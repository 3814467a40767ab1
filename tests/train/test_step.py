"""The jitted step: phases and groups, sharding equivalence, non-finite detection."""

import json
import os

import jax
import numpy as np
import pytest

from configs import ivae_synthetic
from jaxmr.data.arrays import ArrayLoader
from jaxmr.tasks import TASKS
from jaxmr.train import loop
from jaxmr.train import mesh as mesh_lib
from jaxmr.train import step as step_lib
from tests.train.toy import build_toy, toy_config


def test_phases_update_only_their_groups_in_order():
    task = build_toy(toy_config())
    mesh = mesh_lib.make_data_mesh(1)
    state = step_lib.init_state(task, jax.random.key(0), mesh)
    batch = {"x": np.array([2.0, 4.0]), "w": np.zeros(2)}
    new, m = jax.jit(step_lib.make_train_step(task))(state, batch, jax.random.key(1))
    # est: b <- 0 - 0.5 * d/db mean((b - x)^2)/2 = 0.5 * mean(x) = 1.5
    np.testing.assert_allclose(new.params["b"]["v"], 1.5)
    # main sees the NEW b: a <- 0 - 0.5 * (0 - 1.5) = 0.75
    np.testing.assert_allclose(new.params["a"]["v"], 0.75)
    assert int(new.step) == 1
    for k in (
        "est/loss",
        "est/grad_norm",
        "est/update_norm",
        "est/param_norm",
        "main/loss",
        "est/w_mean",
    ):
        assert k in m
    np.testing.assert_allclose(m["est/grad_norm"], 3.0)


def test_train_step_on_8_devices_matches_1_device():
    assert jax.device_count() == 8
    config = ivae_synthetic.get_config("smoke")
    task = TASKS["ivae"](config)
    loader = ArrayLoader(task.train_arrays, batch_size=64, seed=0)
    results = []
    for n in (1, 8):
        mesh = mesh_lib.make_data_mesh(n)
        target = step_lib.abstract_state(task, mesh)
        fn = step_lib.jit_train_step(task, mesh, jax.tree.map(lambda s: s.sharding, target))
        state = step_lib.init_state(task, jax.random.key(0), mesh)
        for s in range(3):
            state, m = fn(state, mesh_lib.place_batch(loader.batch(s), mesh), jax.random.key(1))
        assert (
            len(state.params["model"]["flow"]["block_0"]["dense_0"]["kernel"].sharding.device_set)
            == n
        )
        results.append((jax.device_get(state.params), jax.device_get(m)))
    (p1, m1), (p8, m8) = results
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(m1["train/loss"], m8["train/loss"], rtol=1e-4)


def test_too_many_devices_is_a_clear_error():
    with pytest.raises(ValueError, match=r"num_devices=9 but only 8 cpu device"):
        mesh_lib.make_data_mesh(9)


def test_non_finite_loss_stops_naming_step_and_term(tmp_path):
    config = toy_config(**{"data.nan_epoch": 1, "total_steps": 8})
    with pytest.raises(loop.NonFiniteError, match=r"non-finite value est/loss=nan at step 5;"):
        loop.train_and_evaluate(build_toy(config), config, str(tmp_path / "run"))
    rows = [json.loads(r) for r in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["est/loss"]) for r in rows)
    # The last good checkpoint is intact and restorable.
    _, state, step = loop.restore_state(build_toy(config), config, str(tmp_path / "run"))
    assert step == 4 and np.isfinite(state.params["b"]["v"])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_epoch_hook_runs_each_epoch_and_feeds_batches(tmp_path, prefetch):
    # 32 examples / batch 8 = 4 steps per epoch; with prefetch, batches come from a thread.
    config = toy_config(total_steps=12, prefetch=prefetch)
    built = [build_toy(config)]
    loop.train_and_evaluate(built[0], config, str(tmp_path / "run"))
    assert built[0].info["epochs_seen"] == [0, 1, 2]
    rows = [json.loads(r) for r in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["est/w_mean"] for r in rows] == [0.0] * 4 + [1.0] * 4 + [2.0] * 4


def test_epoch_hook_values_survive_resume_mid_epoch(tmp_path):
    workdir = str(tmp_path / "run")
    configs = [toy_config(total_steps=6), toy_config(total_steps=12)]
    built = [build_toy(c) for c in configs]
    loop.train_and_evaluate(built[0], configs[0], workdir)  # stops mid-epoch 1
    loop.train_and_evaluate(built[1], configs[1], workdir)
    assert built[0].info["epochs_seen"] == [0, 1]
    assert built[1].info["epochs_seen"] == [2]  # epoch 1's values came from the checkpoint
    rows = [json.loads(r) for r in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["est/w_mean"] for r in rows] == [0.0] * 4 + [1.0] * 4 + [2.0] * 4
