"""Retrieval baselines end to end on the smoke scenes benchmark: train, resume, evaluate,
the published-layout path, and a missing data root as a one-line error."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import ncr_f30k, ncr_synthetic
from jaxmr.data.retrieval import load_retrieval_data
from jaxmr.evaluate import evaluate
from jaxmr.tasks import build_task
from jaxmr.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _config(cache, arg="smoke", **overrides):
    config = ncr_synthetic.get_config(arg)
    config.data.cache_dir = cache
    config.num_devices = 1
    config.update_from_flattened_dict(overrides)
    return config


def test_ncr_smoke_trains_resumes_and_evaluates(cache, tmp_path):
    workdir = str(tmp_path / "ncr")
    config = _config(cache, total_steps=62)  # 2 epochs of 31 steps: warm-up, then a split
    out = loop.train_and_evaluate(build_task(config), config, workdir)
    assert out["step"] == 62 and np.isfinite(out["dev/rsum"])
    rows = [json.loads(r) for r in open(os.path.join(workdir, "metrics.jsonl"))]
    hook = [r for r in rows if "hook/net_a/clean_fraction" in r]
    assert hook and 0 < hook[0]["hook/net_a/clean_fraction"] <= 1
    assert "hook/net_b/split_auc" in hook[0]
    # Training losses change once the split starts (labeled/unlabeled terms appear).
    assert any(r.get("net_a/warmup") == 0.0 for r in rows)
    assert os.listdir(os.path.join(workdir, "checkpoints_best"))
    # Resume with more steps: continues from 62.
    more = _config(cache, total_steps=70)
    out2 = loop.train_and_evaluate(build_task(more), more, workdir)
    assert out2["step"] == 70
    metrics = evaluate(more, workdir, checkpoint="best")
    for key in ("test/rsum", "test/i2t/R@1", "test/t2i/R@10", "test/srsum", "split/net_a/auc"):
        assert np.isfinite(metrics[key]), key
    assert "test/leak/image_mean" in metrics and "test/leak/text_mean" in metrics
    assert metrics["checkpoint"] == "best" and metrics["step"] <= 70


@pytest.mark.parametrize("method", ["vsepp", "infonce"])
def test_baselines_train(cache, tmp_path, method):
    config = _config(cache, f"smoke,method={method}", total_steps=8)
    config.evals.dev_every_steps = 4
    task = build_task(config)
    assert task.info["nets"] == ("net_a",) and task.epoch_hook is None
    out = loop.train_and_evaluate(task, config, str(tmp_path / method))
    assert np.isfinite(out["dev/rsum"]) and np.isfinite(out["net_a/loss"])


def test_training_batches_share_image_rows_by_index(cache):
    config = _config(cache)
    data = load_retrieval_data(config.data)
    task = build_task(config)
    sampler = task.make_sampler(batch_size=16, seed=0)
    b = sampler.batch(3)
    for stream in ("l_net_a", "u_net_a", "l_net_b", "u_net_b"):  # NCR's loaders per network
        np.testing.assert_array_equal(
            b[f"{stream}/images"],
            np.asarray(data.train.images)[data.pairing.noisy_cap2img[b[f"{stream}/index"]]],
        )
    assert not np.array_equal(b["l_net_a/index"], b["l_net_b/index"])  # each net its order
    assert isinstance(data.train.images, np.memmap)
    # The noise index is saved and reused: a second load gives the identical pairing.
    again = load_retrieval_data(config.data)
    np.testing.assert_array_equal(again.pairing.noisy_cap2img, data.pairing.noisy_cap2img)
    assert abs(data.pairing.realised_ratio - 0.4) < 0.05


def test_published_layout_path_reads_the_same_files(cache, tmp_path):
    scenes = load_retrieval_data(_config(cache).data)
    config = _config(cache, **{"data.source": "precomp", "data.root": scenes.root,
                               "data.name": "scenes"})  # fmt: skip
    data = load_retrieval_data(config.data)
    np.testing.assert_array_equal(data.train.tokens, scenes.train.tokens)
    assert not data.factors  # ground truth only for the generated benchmark


def test_missing_root_is_a_one_line_error():
    proc = subprocess.run(
        [sys.executable, "train.py", "--config=configs/ncr_f30k.py",
         "--config.data.root=/nonexistent", "--workdir=/tmp/jaxmr_missing_root"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 1
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "/nonexistent/f30k_precomp" in err[0], proc.stderr


def test_published_configs_state_the_family_schedule():
    config = ncr_f30k.get_config()
    spe = 29000 * 5 // 128
    assert config.total_steps == 45 * spe and config.loss.warmup_epochs == 5
    assert config.schedule.decay_steps == (35 * spe,)
    assert (config.batch_size, config.optim.learning_rate, config.optim.grad_clip_norm) == (
        128, 2e-4, 2.0)  # fmt: skip


def test_ncr_network_trains_one_pass_over_its_labeled_set_per_epoch(cache):
    """NCR's co-training epoch is `len(labeled_trainloader)` updates: with the partner's split
    calling 40 pairs clean (2 batches of 32), net_a updates at steps 0-1 of a co-training epoch
    and sits out the rest; net_b (whose partner calls every pair clean) updates throughout."""
    import jax

    from jaxmr.train import mesh as mesh_lib
    from jaxmr.train import step as step_lib

    config = _config(cache)
    assert config.loss.co_train_epoch == "labeled_pass"  # NCR's, the default
    task = build_task(config)
    sampler = task.make_sampler(batch_size=config.batch_size, seed=0)
    n = sampler.num_examples
    few = np.zeros(n, np.float32)
    few[:40] = 1.0
    sampler.set_per_example("clean_pred_net_b", few)  # net_a's labeled set: 40 pairs
    sampler.set_per_example("clean_prob_net_b", few)
    mesh = mesh_lib.make_data_mesh(1)
    state = step_lib.init_state(task, jax.random.key(0), mesh)
    spe = sampler.steps_per_epoch
    fn = jax.jit(step_lib.make_train_step(task, steps_per_epoch=spe))
    moved = {}
    for pos in (1, 2):  # the pass's last step, then the first step after it
        step = config.loss.warmup_epochs * spe + pos
        s0 = state.replace(step=jax.numpy.asarray(step, jax.numpy.int32))
        s1, m = fn(s0, mesh_lib.place_batch(sampler.batch(step), mesh), jax.random.key(1))
        moved[pos] = {
            net: _moved(jax.tree.leaves(s1.params[net]), jax.tree.leaves(s0.params[net]))
            for net in ("net_a", "net_b")
        }
        assert float(m["net_a/active"]) == float(pos < 2)
        assert float(m["net_b/active"]) == 1.0
    assert moved[1]["net_a"] > 0 and moved[1]["net_b"] > 0 and moved[2]["net_b"] > 0
    assert moved[2]["net_a"] == 0.0  # idle: parameters untouched (Adam would still move them)


def _moved(a, b) -> float:
    """Summed absolute change between two parameter trees."""
    diffs = [np.abs(np.asarray(x) - np.asarray(y)).sum() for x, y in zip(a, b, strict=True)]
    return float(sum(diffs))
