"""End to end: smoke training, resume, eval outputs, and one-line CLI errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import ivae_synthetic
from jaxmr.evaluate import evaluate
from jaxmr.tasks import build_task
from jaxmr.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _steps(path):
    return [json.loads(r)["step"] for r in open(path)]


@pytest.mark.e2e  # train.py + eval.py + resume as scripts (make test-e2e, CI)
def test_smoke_run_resume_and_eval(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    config = ivae_synthetic.get_config("smoke")
    out = loop.train_and_evaluate(build_task(config), config, workdir)
    assert out["step"] == 40 and np.isfinite(out["train/loss"])
    assert 0.0 < out["mcc/mcc_strong"] <= 1.0
    assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [20, 40]
    assert any(
        f.startswith("events.out.tfevents")
        for f in os.listdir(os.path.join(workdir, "tensorboard"))
    )
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved["total_steps"] == 40 and saved["model"]["variant"] == "implicit"
    first = _steps(os.path.join(workdir, "metrics.jsonl"))
    assert first[-1] == 40

    # A crash after logging but before the next checkpoint leaves rows beyond step 40.
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": 45, "train/loss": 0.0}) + "\n")
    capsys.readouterr()
    config.unlock()
    config.total_steps = 80
    out2 = loop.train_and_evaluate(build_task(config), config, workdir)
    assert "resuming from checkpoint at step 40" in capsys.readouterr().out
    assert out2["step"] == 80
    steps = _steps(os.path.join(workdir, "metrics.jsonl"))
    assert steps[: len(first)] == first and 45 not in steps
    assert steps[len(first)] == 50 and steps[-1] == 80  # continues from the restored step

    metrics = evaluate(config, workdir)
    on_disk = json.load(open(os.path.join(workdir, "eval", "metrics.json")))
    assert on_disk["step"] == 80 and on_disk["variant"] == "implicit"
    for k in ("mcc_strong", "mcc_weak", "mcc_strong_spearman", "mcc_weak_spearman"):
        assert 0.0 <= on_disk[k] <= 1.0
    assert on_disk["mcc_strong"] == pytest.approx(metrics["mcc_strong"])
    assert on_disk["mcc_strong"] == pytest.approx(out2["mcc/mcc_strong"], abs=1e-6)
    for fig in on_disk["figures"]:
        with open(os.path.join(workdir, fig), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.path.basename(f) for f in on_disk["figures"]) == [
        "correlation.png",
        "inverse_convergence.png",
        "scatter.png",
        "traversal_factors.png",
        "traversal_lines.png",
    ]
    assert on_disk["traversal/round_trip_max"] < 1e-4


@pytest.mark.parametrize("variant", ["ivae", "vae", "isometry"])
def test_other_variants_train(tmp_path, variant):
    config = ivae_synthetic.get_config(f"smoke,variant={variant}")
    config.total_steps = 10
    out = loop.train_and_evaluate(build_task(config), config, str(tmp_path / variant))
    assert np.isfinite(out["train/loss"]) and 0.0 < out["mcc/mcc_strong"] <= 1.0


def test_user_npz_data(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", u=rng.normal(size=(256, 4)), x=rng.normal(size=(256, 3)))
    config = ivae_synthetic.get_config("smoke")
    config.data.path = str(tmp_path / "d.npz")
    config.model.latent_dim = 3
    config.total_steps = 4
    out = loop.train_and_evaluate(build_task(config), config, str(tmp_path / "run"))
    assert np.isfinite(out["train/loss"]) and "mcc/mcc_strong" not in out  # no factors given


def _cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "extra,pattern",
    [
        (["--config.model.bogus=1"], "unknown config key in ['--config.model.bogus=1']"),
        (["--config.total_steps=abc"], "--config.total_steps=abc: invalid literal for int()"),
        (["--config.num_devices=4"], "config.num_devices=4 but only 1 cpu device(s) exist"),
        (["--config.model.variant=nope"], "config.model.variant must be one of"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, extra, pattern):
    res = _cli("--config=configs/ivae_synthetic.py:smoke", f"--workdir={tmp_path}/w", *extra)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and pattern in lines[0], res.stderr


def test_cli_missing_workdir_parent(tmp_path):
    res = _cli("--config=configs/ivae_synthetic.py:smoke", f"--workdir={tmp_path}/no/such")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: FileNotFoundError: --workdir parent directory does not exist: {tmp_path}/no"
    )
