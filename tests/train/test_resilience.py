"""Preemption and crash safety, and multi-process training (real processes, real signals)."""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import ivae_synthetic
from jaxmr.tasks import build_task
from jaxmr.train import loop
from jaxmr.train import mesh as mesh_lib
from jaxmr.train import step as step_lib
from jaxmr.train.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = "configs/ivae_synthetic.py:smoke"
LONG = [
    "--config.total_steps=160",
    "--config.schedule.checkpoint_every_steps=40",
    "--config.schedule.log_every_steps=10",
    "--config.evals.mcc.every_steps=80",
]


def _env(devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _start(workdir, *extra, devices=1):
    return subprocess.Popen(
        [sys.executable, "train.py", f"--config={SMOKE}", f"--workdir={workdir}", *extra],
        cwd=ROOT,
        env=_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(proc, workdir, step, timeout=120):
    path = os.path.join(workdir, "checkpoints", str(step))
    t0 = time.time()
    while not os.path.isdir(path):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "no checkpoint in time"
        time.sleep(0.02)


def _params(workdir, step=None):
    config = ivae_synthetic.get_config("smoke")
    task = build_task(config)
    mesh = mesh_lib.make_data_mesh(1)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    state, _, s = ckpt.restore(step_lib.abstract_state(task, mesh), step)
    ckpt.close()
    return s, jax.device_get(state)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of 160 steps."""
    workdir = str(tmp_path_factory.mktemp("ref") / "run")
    proc = _start(workdir, *LONG)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return workdir


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.e2e  # a train.py subprocess killed and resumed (make test-e2e, CI)
def test_sigkill_then_resume_is_bit_identical(reference, tmp_path):
    workdir = str(tmp_path / "run")
    proc = _start(workdir, *LONG)
    _wait_for_checkpoint(proc, workdir, 80)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resumed = _start(workdir, *LONG)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming from checkpoint at step" in out
    s_ref, ref_state = _params(reference)
    s_new, new_state = _params(workdir)
    assert s_ref == s_new == 160
    _assert_same_state(ref_state, new_state)
    # Same log, row for row, including the data order's effect on every loss and the evals.
    with (
        open(os.path.join(reference, "metrics.jsonl")) as f1,
        open(os.path.join(workdir, "metrics.jsonl")) as f2,
    ):
        assert f1.read() == f2.read()


@pytest.mark.e2e  # a train.py subprocess killed and resumed (make test-e2e, CI)
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(reference, tmp_path):
    workdir = str(tmp_path / "run")
    proc = _start(workdir, *LONG)
    _wait_for_checkpoint(proc, workdir, 40)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    line = [ln for ln in out.splitlines() if "received SIGTERM" in ln]
    assert line, out
    stopped = int(line[0].split("checkpoint at step ")[1].split(";")[0])
    assert 40 <= stopped < 160
    assert _params(workdir)[0] == stopped  # the checkpoint at the stop step is readable
    resumed = _start(workdir, *LONG)
    assert resumed.communicate(timeout=300) and resumed.returncode == 0
    _assert_same_state(_params(reference)[1], _params(workdir)[1])


def test_truncated_newest_checkpoint_falls_back_to_previous(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    config = ivae_synthetic.get_config("smoke")
    loop.train_and_evaluate(build_task(config), config, workdir)
    state_dir = os.path.join(workdir, "checkpoints", "40", "state")
    for root, _, files in os.walk(state_dir):
        for f in files:
            os.truncate(os.path.join(root, f), 3)
    capsys.readouterr()
    out = loop.train_and_evaluate(build_task(config), config, workdir)
    captured = capsys.readouterr()
    ckpt = os.path.join(workdir, "checkpoints")
    # One sentence naming the checkpoint, the reason in words and what happens instead.
    assert captured.err.strip().splitlines() == [
        f"warning: checkpoint {ckpt}/40 cannot be read (its files are truncated or corrupted);"
        f" using step 20 instead, and moving 40 to {ckpt}_unreadable/"
    ]
    assert "resuming from checkpoint at step 20" in captured.out
    assert out["step"] == 40 and np.isfinite(out["train/loss"])
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["20", "40"]
    assert len(os.listdir(os.path.join(workdir, "checkpoints_unreadable"))) == 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
def test_two_processes_of_4_devices_match_one_process_of_8(tmp_path):
    steps = [
        "--config.total_steps=4",
        "--config.schedule.checkpoint_every_steps=4",
        "--config.evals.mcc.every_steps=-1",
    ]
    port = _free_port()
    workdir = str(tmp_path / "mp")
    procs = [
        _start(
            workdir,
            *steps,
            "--distributed=on",
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={i}",
            devices=4,
        )
        for i in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    single = _start(str(tmp_path / "single"), *steps, devices=8)
    out, err = single.communicate(timeout=300)
    assert single.returncode == 0, err[-3000:]
    assert "over 8 cpu device(s)" in out
    s_mp, mp_state = _params(workdir)
    s_1, one_state = _params(str(tmp_path / "single"))
    assert s_mp == s_1 == 4
    for x, y in zip(jax.tree.leaves(mp_state), jax.tree.leaves(one_state), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # Only process 0 wrote the log.
    assert os.path.exists(os.path.join(workdir, "metrics.jsonl"))
