"""The trainer contract's executable specification: one test per point of
`jaxmr/train/task.py`, plus a noisy-correspondence-shaped toy end to end."""

import ast
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxmr.data.samplers import IndexedPairSampler
from jaxmr.train import loop
from jaxmr.train import mesh as mesh_lib
from jaxmr.train import step as step_lib
from jaxmr.train.task import Evaluator, Phase, Sampler, Task
from tests.train.toy import build_pairs_toy, build_toy, toy_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _imports(path: pathlib.Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


# 1. Task/Phase live in the trainer; the trainer imports no method, viz or method data.
def test_1_trainer_imports_no_task_viz_or_method_data():
    allowed_data = {"jaxmr.data.arrays"}
    for path in (ROOT / "jaxmr" / "train").glob("*.py"):
        for mod in _imports(path):
            assert not mod.startswith(("jaxmr.tasks", "jaxmr.viz")), (path.name, mod)
            if mod.startswith("jaxmr.data"):
                assert mod in allowed_data, (path.name, mod)
    import jaxmr.tasks
    import jaxmr.train.task as task_mod

    assert jaxmr.tasks.TASKS and Task.__module__ == task_mod.__name__


def _one_step(task, batch, steps=1):
    mesh = mesh_lib.make_data_mesh(1)
    state = step_lib.init_state(task, jax.random.key(0), mesh)
    fn = jax.jit(step_lib.make_train_step(task, steps_per_epoch=2))
    ms = []
    for _ in range(steps):
        state, m = fn(state, batch, jax.random.key(1))
        ms.append(jax.device_get(m))
    return state, ms


def _scalar_task(loss_fn, **kw):
    return Task(
        name="t",
        init_fn=lambda key: {"p": {"v": jnp.zeros(())}},
        optimizers={"p": optax.sgd(1.0)},
        phases=(Phase("main", ("p",), loss_fn, **kw.pop("phase_kw", {})),),
        predict_fn=lambda params, batch: {},
        train_arrays={"x": np.zeros(4, np.float32)},
        **kw,
    )


# 2. The loss sees the step and the epoch (steps_per_epoch = 2 here).
def test_2_loss_sees_step_and_epoch():
    def loss_fn(params, batch, ctx):
        return params["p"]["v"] * 0.0, {"step": ctx.step, "epoch": ctx.epoch}

    _, ms = _one_step(_scalar_task(loss_fn), {"x": np.zeros(2, np.float32)}, steps=5)
    assert [int(m["main/step"]) for m in ms] == [0, 1, 2, 3, 4]
    assert [int(m["main/epoch"]) for m in ms] == [0, 0, 1, 1, 2]


# 3. Carried state: updated only by its owner, checkpointed, resumed bit-identically.
def test_3_carried_state_updated_by_owner_only():
    def loss_fn(params, batch, ctx):
        return jnp.sum(params["p"]["v"] ** 2), {"carry": {"count": ctx.carry["count"] + 1}}

    task = _scalar_task(
        loss_fn,
        init_carry=lambda key: {"count": jnp.zeros((), jnp.int32)},
        phase_kw={"carries": ("count",)},
    )
    state, _ = _one_step(task, {"x": np.zeros(2, np.float32)}, steps=3)
    assert int(state.carry["count"]) == 3

    rogue = _scalar_task(
        loss_fn, init_carry=lambda key: {"count": jnp.zeros((), jnp.int32)}
    )  # the phase does not declare `count`
    with pytest.raises(ValueError, match="does not own"):
        _one_step(rogue, {"x": np.zeros(2, np.float32)})


# 4. What an epoch hook returns is logged.
def test_4_epoch_hook_output_is_logged(tmp_path):
    config = toy_config(total_steps=20, batch_size=8)
    task = build_pairs_toy(config)
    loop.train_and_evaluate(task, config, str(tmp_path / "run"))
    rows = [json.loads(r) for r in open(tmp_path / "run" / "metrics.jsonl")]
    hooked = [r for r in rows if "hook/clean_fraction_a" in r]
    assert hooked and "hook/gmm_means_a/0" in hooked[0] and "hook/gmm_means_a/1" in hooked[0]
    assert hooked[0]["step"] == 15 * 1  # 120 captions / batch 8 = 15 steps per epoch
    assert hooked[0]["hook/gmm_means_a/0"] < hooked[0]["hook/gmm_means_a/1"]


# 5. A phase may run k times per step; names are unique.
def test_5_phase_repeats_and_unique_names():
    for k in (1, 3):
        task = build_toy(toy_config(**{"model.est_repeats": k}))
        state, _ = _one_step(task, {"x": np.array([2.0, 4.0], np.float32), "w": np.zeros(2)})
        # sgd(0.5) on (b - 3)^2/2 from 0: b_k = 3 (1 - 0.5^k)
        np.testing.assert_allclose(state.params["b"]["v"], 3 * (1 - 0.5**k), rtol=1e-6)
    with pytest.raises(ValueError, match="unique"):
        Task(
            name="t",
            init_fn=lambda key: {"p": {}},
            optimizers={"p": optax.sgd(1.0)},
            phases=(Phase("x", ("p",), None), Phase("x", ("p",), None)),
            predict_fn=None,
            train_arrays={"x": np.zeros(1)},
        )


# 6. A task's sampler over index arrays: shared rows by index, subsets, resumable.
def test_6_sampler_gathers_by_index_and_subsets():
    ims = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    cap2img = np.repeat(np.arange(10), 5).astype(np.int32)
    s = IndexedPairSampler(
        {"cap": np.arange(50), "img_index": cap2img},
        {"img": (ims, "img_index")},
        batch_size=10,
        seed=0,
    )
    assert isinstance(s, Sampler)
    b = s.batch(3)
    np.testing.assert_array_equal(b["img"], ims[cap2img[b["cap"]]])
    mask = np.zeros(50, bool)
    mask[:7] = True
    s.set_subset(mask)
    drawn = np.concatenate([s.batch(t)["index"] for t in range(5)])
    assert set(drawn) <= set(range(7))
    again = IndexedPairSampler(
        {"cap": np.arange(50), "img_index": cap2img},
        {"img": (ims, "img_index")},
        batch_size=10,
        seed=0,
    )
    for k, v in s.per_example.items():  # what a checkpoint restores
        again.set_per_example(k, v)
    np.testing.assert_array_equal(again.batch(4)["index"], s.batch(4)["index"])


# 7. Best checkpoint by a named metric, next to the last N; eval restores either.
def test_7_best_checkpoint_kept_and_restorable(tmp_path):
    class Scripted(Evaluator):
        name, every_steps = "dev", 1

        def __init__(self):
            self.values = iter([1.0, 5.0, 2.0, 3.0])

        def run(self, params):
            return {"rsum": next(self.values)}

    def loss_fn(params, batch, ctx):
        return jnp.sum((params["p"]["v"] - 1.0) ** 2), {}

    task = _scalar_task(loss_fn, evaluators=(Scripted(),), best_metric="dev/rsum")
    config = toy_config(total_steps=4, batch_size=2, **{"schedule.checkpoint_every_steps": 1})
    config.schedule.keep_checkpoints = 2
    workdir = str(tmp_path / "run")
    loop.train_and_evaluate(task, config, workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints_best"))) == ["2"]
    _, _, latest = loop.restore_state(task, config, workdir)
    _, best_state, best = loop.restore_state(task, config, workdir, checkpoint="best")
    assert (latest, best) == (4, 2)
    _, s2, _ = loop.restore_state(task, config, workdir, step=2, checkpoint="best")
    np.testing.assert_array_equal(best_state.params["p"]["v"], s2.params["p"]["v"])


# 8. Estimator alternation through phases: an estimator-only phase leaves the rest untouched.
def test_8_estimator_phase_updates_only_its_group():
    task = build_pairs_toy(toy_config(**{"model.est_repeats": 2}))
    est_only = Task(**{**task.__dict__, "phases": (task.phases[0],)})
    sampler = task.make_sampler(batch_size=8, seed=0)
    batch = sampler.batch(0)
    mesh = mesh_lib.make_data_mesh(1)
    before = jax.device_get(step_lib.init_state(task, jax.random.key(0), mesh))
    state = step_lib.init_state(task, jax.random.key(0), mesh)
    after, _ = jax.jit(step_lib.make_train_step(est_only))(state, batch, jax.random.key(1))
    after = jax.device_get(after)
    for g in ("a", "b"):
        for x, y in zip(
            jax.tree.leaves(before.params[g]), jax.tree.leaves(after.params[g]), strict=True
        ):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(before.params["est"]["m"], after.params["est"]["m"])


# 9. Evaluators: typed interface, evaluate() defaults to run() with no figures.
def test_9_evaluator_interface():
    class E(Evaluator):
        name = "e"

        def run(self, params):
            return {"m": 1.5}

    assert E().evaluate(None, "/nonexistent") == ({"e/m": 1.5}, [])
    src = (ROOT / "jaxmr" / "evaluate.py").read_text()
    assert "Evaluator)" not in src and "import MCCEvaluator" not in src  # no special case


# 10. A phase may declare an update idle: nothing moves but the schedule's clock.
def test_10_idle_update_keeps_params_and_moments_but_advances_the_schedule():
    from configs.common import base_schedule
    from jaxmr.train.optim import build_optimizer

    sched = base_schedule()
    sched.decay, sched.decay_steps, sched.decay_factor = "step", (1,), 0.1
    optim = ml_collections.ConfigDict(
        dict(name="adam", learning_rate=1.0, b1=0.9, b2=0.999, grad_clip_norm=0.0)
    )

    def task_with(active_at):
        def loss_fn(params, batch, ctx):
            loss = jnp.sum((params["p"]["v"] - 3.0) ** 2)
            return loss, {"active": ctx.step != active_at}

        return Task(
            name="t",
            init_fn=lambda key: {"p": {"v": jnp.zeros(())}},
            optimizers={"p": build_optimizer(optim, sched, 10)},
            phases=(Phase("main", ("p",), loss_fn),),
            predict_fn=lambda params, batch: {},
            train_arrays={"x": np.zeros(4, np.float32)},
        )

    # Step 0 idle, step 1 active: one Adam update (its first: size lr), at step 1's lr (0.1).
    state, ms = _one_step(task_with(0), {"x": np.zeros(2, np.float32)}, steps=2)
    assert [float(m["main/active"]) for m in ms] == [0.0, 1.0]
    np.testing.assert_allclose(state.params["p"]["v"], 0.1, rtol=1e-5)
    assert int(_adam_state(state).count) == 1  # Adam's own count saw one update
    assert float(ms[1]["lr/p"]) == pytest.approx(0.1)  # the schedule counted the idle step
    # After one idle step nothing moved: parameters and moments are the initial ones.
    idle, ms = _one_step(task_with(0), {"x": np.zeros(2, np.float32)}, steps=1)
    assert float(idle.params["p"]["v"]) == 0.0 and float(ms[0]["main/update_norm"]) == 0.0
    adam = _adam_state(idle)
    assert int(adam.count) == 0 and float(adam.mu["v"]) == 0.0 and float(adam.nu["v"]) == 0.0

    # Without the flag the same two steps are two updates (what the flag must prevent).
    def plain(params, batch, ctx):
        return jnp.sum((params["p"]["v"] - 3.0) ** 2), {}

    both, _ = _one_step(
        Task(name="t", init_fn=lambda key: {"p": {"v": jnp.zeros(())}},
             optimizers={"p": build_optimizer(optim, sched, 10)},
             phases=(Phase("main", ("p",), plain),), predict_fn=lambda params, batch: {},
             train_arrays={"x": np.zeros(4, np.float32)}),
        {"x": np.zeros(2, np.float32)}, steps=2,
    )  # fmt: skip
    assert float(both.params["p"]["v"]) > 1.0  # 1.0 (lr 1) + ~0.1


def _adam_state(state):
    is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
    return [s for s in jax.tree.leaves(state.opt_state, is_leaf=is_adam) if is_adam(s)][0]


# The noisy-correspondence-shaped toy end to end: co-teaching, k estimator steps, GMM hook,
# 5 captions per image by index, carried state; kill-free resume is bit-identical.
def test_pairs_toy_trains_and_resumes_bit_identically(tmp_path):
    cfg = dict(total_steps=40, batch_size=8, **{"model.est_repeats": 3})
    config = toy_config(**cfg)
    ref = str(tmp_path / "ref")
    out = loop.train_and_evaluate(build_pairs_toy(config), config, ref)
    assert out["hook/split_accuracy_a"] > 0.8  # the GMM split finds the re-paired captions
    split = str(tmp_path / "split")
    c1 = toy_config(**{**cfg, "total_steps": 22})
    loop.train_and_evaluate(build_pairs_toy(c1), c1, split)
    loop.train_and_evaluate(build_pairs_toy(config), config, split)
    task = build_pairs_toy(config)
    _, s_ref, _ = loop.restore_state(task, config, ref)
    _, s_split, _ = loop.restore_state(task, config, split)
    for a, b in zip(jax.tree.leaves(s_ref), jax.tree.leaves(s_split), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(s_ref.carry["loss_ema"]) > 0

    def train_rows(d):  # the first run's final evaluation (step 22) is the only extra row
        rows = [json.loads(r) for r in open(os.path.join(d, "metrics.jsonl"))]
        return [r for r in rows if not any(k.startswith("fit/") for k in r)]

    assert train_rows(ref) == train_rows(split)
    assert any("hook/clean_fraction_b" in r for r in train_rows(split))


# 4b. A resume exactly at an epoch boundary does not log that epoch's hook row twice.
def test_4_hook_row_not_duplicated_on_resume_at_epoch_boundary(tmp_path):
    import shutil

    workdir = tmp_path / "run"
    config = toy_config(total_steps=17, batch_size=8, **{"schedule.checkpoint_every_steps": 15})
    loop.train_and_evaluate(build_pairs_toy(config), config, str(workdir))
    # As if killed after step 16: the hook for epoch 1 ran (row at step 15) but only the
    # step-15 checkpoint was committed.
    shutil.rmtree(workdir / "checkpoints" / "17")
    loop.train_and_evaluate(build_pairs_toy(config), config, str(workdir))
    rows = [json.loads(r) for r in open(workdir / "metrics.jsonl")]
    hook_steps = [r["step"] for r in rows if "hook/clean_fraction_a" in r]
    assert hook_steps == [15]  # one row per epoch start (epoch 0 is warm-up), none twice
    aside = [json.loads(r) for r in open(workdir / "metrics.discarded.jsonl")]
    assert [r["step"] for r in aside if "hook/clean_fraction_a" in r] == [15]
    # The log reads like one uninterrupted run: same rows, same keys, in the same order.
    loop.train_and_evaluate(build_pairs_toy(config), config, str(tmp_path / "ref"))
    ref = [json.loads(r) for r in open(tmp_path / "ref" / "metrics.jsonl")]
    assert [(r["step"], sorted(r)) for r in rows] == [(r["step"], sorted(r)) for r in ref]


# 4c. A run killed right after a checkpoint that shares its step with an evaluation keeps
# that evaluation's row: the checkpoint of a step is written after the step's evaluations.
def test_4_eval_row_of_a_checkpointed_step_survives_a_kill(tmp_path, monkeypatch):
    from jaxmr.train import checkpoint as ckpt_lib

    class Killed(Exception):
        pass

    config = toy_config(total_steps=10, **{"schedule.checkpoint_every_steps": 5})
    original = ckpt_lib.Checkpointer.save

    def save_then_die(self, step, state, **kw):
        original(self, step, state, **kw)
        if step == 5:
            raise Killed

    workdir = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(ckpt_lib.Checkpointer, "save", save_then_die)
        with pytest.raises(Killed):
            loop.train_and_evaluate(build_pairs_toy(config), config, str(workdir))
    loop.train_and_evaluate(build_pairs_toy(config), config, str(workdir))
    rows = [json.loads(r) for r in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows if "fit/err" in r] == [5, 10]
    loop.train_and_evaluate(build_pairs_toy(config), config, str(tmp_path / "ref"))
    ref = [json.loads(r) for r in open(tmp_path / "ref" / "metrics.jsonl")]
    assert [(r["step"], sorted(r)) for r in rows] == [(r["step"], sorted(r)) for r in ref]
