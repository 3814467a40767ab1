"""What a run records and keeps: config.json/runs.jsonl, prompt checkpoint commits, metrics
rows, one-sentence warnings, a read-only eval.py, learning rates and steps/s."""

import json
import os

import numpy as np
import pytest

from configs import ivae_synthetic
from jaxmr.evaluate import evaluate
from jaxmr.tasks import build_task
from jaxmr.train import checkpoint as checkpoint_lib
from jaxmr.train import loop, record
from jaxmr.train.logging import Progress
from jaxmr.train.record import IncompatibleConfigError


def _config(total=20, every=10):
    config = ivae_synthetic.get_config("smoke")
    config.total_steps = total
    config.schedule.checkpoint_every_steps = every
    config.schedule.log_every_steps = 10
    config.evals.mcc.every_steps = 0
    return config


def _train(config, workdir):
    return loop.train_and_evaluate(build_task(config), config, str(workdir))


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_record_resume_check_and_learning_rate(tmp_path, capsys):
    workdir = tmp_path / "run"
    out = _train(_config(), workdir)
    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["total_steps"] == 20 and recorded["model"]["latent_dim"] == 5
    (first,) = _rows(workdir / "runs.jsonl")
    assert first["resumed_from"] is None and first["config_changes"] == {}
    assert first["command"] and first["cwd"] and "git_commit" in first
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
        assert first["versions"][pkg], pkg
    # Every optimiser's learning rate is logged (cosine decay from 3e-3 over 20 steps).
    lr = {r["step"]: r["lr/model"] for r in _rows(workdir / "metrics.jsonl") if "lr/model" in r}
    assert lr[10] == pytest.approx(3e-3 * 0.5 * (1 + np.cos(np.pi * 9 / 20)), rel=1e-5)
    assert out["lr/model"] == pytest.approx(3e-3 * 0.5 * (1 + np.cos(np.pi * 19 / 20)), rel=1e-4)

    # A failing start (bad data file) leaves the record of the checkpoints alone.
    bad = _config()
    bad.data.path = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError):
        _train(bad, workdir)
    assert json.loads((workdir / "config.json").read_text()) == recorded

    # A model change is refused before any checkpoint is read, naming the keys.
    other = _config()
    other.model.flow.num_blocks = 3
    other.loss.gamma = 10.0
    capsys.readouterr()
    with pytest.raises(IncompatibleConfigError) as info:
        _train(other, workdir)
    assert str(info.value) == (
        f"the checkpoints in {workdir} were trained with another config (loss.gamma: 1000.0 -> "
        "10.0; model.flow.num_blocks: 6 -> 3); resume with the values in config.json, or "
        "train in a new --workdir"
    )
    assert "warning" not in capsys.readouterr().err
    assert json.loads((workdir / "config.json").read_text()) == recorded

    # Without the record, the mismatch is still one error, not "unreadable" warnings first.
    os.rename(workdir / "config.json", workdir / "config.json.bak")
    with pytest.raises(ValueError, match="do not match the model this config builds"):
        _train(other, workdir)
    assert capsys.readouterr().err == ""
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20"]  # nothing moved
    os.rename(workdir / "config.json.bak", workdir / "config.json")

    # Allowed changes are recorded, not silently overwritten.
    longer = _config(total=30)
    _train(longer, workdir)
    second = _rows(workdir / "runs.jsonl")[-1]
    assert second["resumed_from"] == 20
    assert second["config_changes"] == {"total_steps": [20, 30]}
    assert json.loads((workdir / "config.json").read_text())["total_steps"] == 30
    assert "config changed since the last start" in capsys.readouterr().out


def test_unfinished_checkpoints_and_metrics_rows_are_reported_and_kept(tmp_path, capsys):
    workdir = tmp_path / "run"
    _train(_config(), workdir)
    before = _rows(workdir / "metrics.jsonl")
    # What a kill -9 mid-save leaves: only a temporary folder, no committed checkpoint.
    ckpt = workdir / "checkpoints"
    for name in os.listdir(ckpt):
        os.rename(ckpt / name, ckpt / f"{name}.orbax-checkpoint-tmp-1234")
    capsys.readouterr()
    _train(_config(), workdir)
    out = capsys.readouterr().out
    assert (
        f"warning: {ckpt} holds only unfinished checkpoint(s) (step [10, 20], never committed "
        "by a killed run); starting over from step 0"
    ) in out
    assert f"moved {len(before)} rows of metrics.jsonl logged after step 0" in out
    discarded = _rows(workdir / "metrics.discarded.jsonl")
    assert [{k: v for k, v in r.items() if k != "restarted_from"} for r in discarded] == before
    assert all(r["restarted_from"] == 0 for r in discarded)
    assert [r["step"] for r in _rows(workdir / "metrics.jsonl")] == [r["step"] for r in before]


def test_saves_commit_promptly_and_eval_reads_only(tmp_path, capsys, monkeypatch):
    # Every save is committed (a final folder, not Orbax's temporary one) before training
    # goes on, so a kill -9 right after it cannot lose it.
    committed = []
    save = checkpoint_lib.Checkpointer.save

    def checked_save(self, step, *a, **k):
        save(self, step, *a, **k)
        committed.append((step, os.path.isdir(os.path.join(self.directory, str(step)))))

    monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", checked_save)
    workdir = tmp_path / "run"
    config = _config(total=30)
    _train(config, workdir)
    assert committed == [(10, True), (20, True), (30, True)]
    evaluate(config, str(workdir))
    # Truncate the newest checkpoint: eval reports it and evaluates the newest readable one.
    for root, _, files in os.walk(workdir / "checkpoints" / "30" / "state"):
        for f in files:
            os.truncate(os.path.join(root, f), 3)
    listing = sorted(os.listdir(workdir))
    capsys.readouterr()
    metrics = evaluate(config, str(workdir))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"warning: checkpoint {workdir}/checkpoints/30 cannot be read (its files are truncated "
        "or corrupted); using step 20 instead"
    ]
    assert metrics["step"] == 20
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20", "30"]  # nothing moved
    assert sorted(os.listdir(workdir)) == listing
    assert json.loads((workdir / "eval" / "step_30" / "metrics.json").read_text())["step"] == 30
    assert json.loads((workdir / "eval" / "step_20" / "metrics.json").read_text())["step"] == 20
    latest = json.loads((workdir / "eval" / "metrics.json").read_text())
    assert latest["step"] == 20 and (workdir / "eval" / "correlation.png").is_file()


def test_steps_per_second_leave_out_eval_and_checkpoint_time(capsys):
    now = [0.0]
    progress = Progress(100, 0, clock=lambda: now[0])
    now[0] = 2.0  # 20 steps of training
    with progress.timing("eval"):
        now[0] = 7.0
    with progress.timing("checkpoint"):
        now[0] = 8.0
    now[0] = 10.0  # 20 more steps
    assert progress.rate(40) == pytest.approx(10.0)  # 40 steps in 4 s of training
    progress.update(40, {"train/loss": 1.5})
    line = capsys.readouterr().out
    assert "10.0 steps/s (training only, checkpoint 1.0s, eval 5.0s)" in line


def test_url_workdir_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must be a local or mounted folder, got the URL gs://"):
        loop.prepare_workdir("gs://bucket/run")


def test_keys_declared_since_the_record_are_not_refused(tmp_path):
    config = _config()
    recorded = record.config_dict(config)
    del recorded["model"]["flow"]["linear"]  # a record written before the key was declared
    recorded["model"]["latent_dim"] = 4
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(IncompatibleConfigError, match=r"\(model.latent_dim: 4 -> 5\)"):
        record.check_resume(str(tmp_path), config)
    recorded["model"]["latent_dim"] = 5
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    assert record.check_resume(str(tmp_path), config) == {"model.flow.linear": [None, False]}


@pytest.mark.parametrize(
    "key, legacy, new",
    [
        ("loss.co_train_epoch", "fixed", "labeled_pass"),
        ("model.target_basis", "pca", "cca"),
        ("loss.elbo", "analytic", "beta_tc"),
        ("loss.soft_form", "joint", "directional"),
        ("loss.neighbour_trusted", "own", "text"),
        ("model.mei_decorrelation", "none", "regress"),
    ],
)
def test_a_key_declared_with_a_new_behaviour_refuses_a_record_that_lacks_it(
    tmp_path, key, legacy, new
):
    """A record written before `key` existed ran the legacy behaviour: resuming it with the
    new default would silently switch the objective, so it is refused unless set back."""
    config = _config()
    section, name = key.split(".")
    with config.unlocked():
        config[section][name] = new
    recorded = record.config_dict(config)
    del recorded[section][name]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(
        IncompatibleConfigError, match=rf"{key}: '{legacy}' -> '{new}', set {key}='{legacy}'"
    ):
        record.check_resume(str(tmp_path), config)
    with config.unlocked():
        config[section][name] = legacy
    assert record.check_resume(str(tmp_path), config) == {key: [None, legacy]}
