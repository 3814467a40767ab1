"""scripts/retrieval_study.py: the grid, the schedule scaling, the tables, and two tiny runs
(vsepp and ncr on the smoke benchmark) through main(), read back the second time."""

import csv
import json
import os

import pytest

from configs import ncr_synthetic
from tests.scripts.loader import load_script


@pytest.fixture(scope="module")
def study():
    return load_script("retrieval_study")


def test_full_and_quick_grids(study, tmp_path):
    jobs = study.build_jobs(study.parse_args([f"--workdir={tmp_path}"]))
    assert len(study.METHODS) >= 16
    assert len(jobs) == len(study.METHODS) * 5 * 3  # methods x settings x seeds
    assert len({j["workdir"] for j in jobs}) == len(jobs)
    by_name = {(j["method"], j["setting"], j["seed"]): j for j in jobs}
    assert by_name[("ncr", "caption_0.6", 2)]["arg"] == "method=ncr,noise=0.6,convention=caption"
    assert by_name[("disncl_full_emb", "image_0.4", 0)]["arg"] == (
        "ablation=full_emb,noise=0.4,convention=image"
    )
    quick = study.build_jobs(study.parse_args([f"--workdir={tmp_path}", "--quick"]))
    assert [(j["method"], j["setting"], j["seed"]) for j in quick] == [
        ("vsepp", "caption_0.4", 0),
        ("ncr", "caption_0.4", 0),
        ("disncl", "caption_0.4", 0),
    ]
    assert {j["steps_scale"] for j in quick} == {study.QUICK_STEPS_SCALE}
    with pytest.raises(SystemExit, match="unknown methods"):
        study.build_jobs(study.parse_args(["--methods=ncr,scan"]))


def test_steps_scale_keeps_the_schedule_in_whole_epochs(study):
    config = ncr_synthetic.get_config()  # 11 epochs of 195 steps: 3 warm-up, unlabeled from 7
    spe = 5000 * 5 // 128
    assert config.total_steps == 11 * spe
    study.scale_schedule(config, 0.3)
    assert (config.loss.warmup_epochs, config.loss.unlabeled_start_epoch) == (1, 2)
    assert config.schedule.decay_steps == (1 * spe, 3 * spe)  # the warm-up end and epoch 9, scaled
    assert config.total_steps == 4 * spe  # one epoch after the last switch
    tiny = ncr_synthetic.get_config()
    study.scale_schedule(tiny, 0.01)  # never below one epoch per phase, one after the switches
    assert tiny.loss.warmup_epochs == 1 and tiny.total_steps == 2 * spe
    same = ncr_synthetic.get_config()
    study.scale_schedule(same, 1.0)
    assert same.total_steps == 11 * spe and same.schedule.decay_steps == (3 * spe, 9 * spe)
    vsepp = ncr_synthetic.get_config("method=vsepp")  # the other methods keep a 2-epoch warm-up
    assert vsepp.total_steps == 10 * spe and vsepp.schedule.decay_steps == (2 * spe, 8 * spe)


def test_missing_config_module_is_a_clear_error(study):
    with pytest.raises(study.StudyError, match=r"configs/no_such_recipe\.py does not exist"):
        study.config_module("no_such_recipe")


def test_tables_mark_cells_not_run(study, tmp_path):
    base = dict(setting="caption_0.4", convention="caption", noise=0.4, steps=10, seconds=1.0)
    rows = [
        dict(base, method="ncr", seed=0, rsum=300.0, split_auc=0.9),
        dict(base, method="ncr", seed=1, rsum=310.0, split_auc=0.8),
        dict(base, method="vsepp", seed=0, rsum=200.0),
    ]
    md = study.markdown_tables(rows)
    assert "305.0 ± 5.0" in md and "0.850 ± 0.050" in md
    assert "MI(MII; MEI)" not in md  # no run reports it
    summary = study.summary_table(rows, n_seeds=2).splitlines()
    assert summary[0].startswith("| method | caption_0.0 | caption_0.2 | caption_0.4")
    ncr = next(line for line in summary if line.startswith("| ncr |"))
    assert ncr.split(" | ")[3] == "305.0 ± 5.0" and ncr.count("—(not run)") == 4
    vsepp = next(line for line in summary if line.startswith("| vsepp |"))
    assert "200.0 ± 0.0 (n=1)" in vsepp
    disncl = next(line for line in summary if line.startswith("| disncl |"))
    assert disncl.count("—(not run)") == 5


@pytest.mark.e2e
def test_two_tiny_runs_write_outputs_and_are_not_retrained(study, tmp_path, monkeypatch):
    workdir = str(tmp_path / "study")
    argv = [
        f"--workdir={workdir}",
        "--size=smoke",
        "--methods=vsepp,ncr",
        "--settings=caption_0.4",
        "--seeds=0",
        f"--set=data.cache_dir={tmp_path / 'cache'}",
        "--set=total_steps=6",
        "--set=evals.dev_every_steps=3",
        "--set=num_devices=1",
    ]
    assert study.main(argv) == 0
    with open(os.path.join(workdir, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == study.CSV_FIELDS
    assert [(r["method"], r["seed"], r["steps"]) for r in rows] == [
        ("vsepp", "0", "6"),
        ("ncr", "0", "6"),
    ]
    for r in rows:
        assert float(r["rsum"]) >= 0 and 0 <= float(r["split_auc"]) <= 1
        assert r["leak_image"] and r["srsum"] and float(r["seconds"]) > 0
    assert rows[1]["split_auc_b"]  # co-teaching: both networks' splits
    run = os.path.join(workdir, "runs", "caption_0.4", "ncr_s0")
    logged = open(os.path.join(run, "metrics.jsonl")).read()
    assert "dev/rsum" in logged and "test/rsum" not in logged  # test: best checkpoint only
    result = os.path.join(run, "result.json")
    with open(result) as f:
        res = json.load(f)
    assert res["arg"] == "method=ncr,noise=0.4,convention=caption,smoke"
    assert "test/i2t/medR" in res["metrics"] and "split/net_b/f1" in res["metrics"]
    with open(os.path.join(workdir, "summary.md")) as f:
        summary = f.read()
    assert "—(not run)" in summary and "| disncl | —(not run)" in summary
    with open(os.path.join(workdir, "rsum_vs_noise.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "### caption_0.4" in open(os.path.join(workdir, "results.md")).read()

    # A second invocation reads the results back: no training, result.json untouched.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("jaxmr.train.loop.train_and_evaluate", no_training)
    mtime = os.path.getmtime(result)
    assert study.main(argv) == 0
    assert os.path.getmtime(result) == mtime
    assert study.main([f"--workdir={workdir}", "--report_only"]) == 0
    # --reevaluate: the best checkpoints evaluated again (still no training), rows rewritten.
    assert study.main(argv + ["--methods=ncr", "--reevaluate"]) == 0
    assert os.path.getmtime(result) > mtime
    with open(result) as f:
        again = json.load(f)
    assert again["rsum"] == res["rsum"] and again["best_step"] == res["best_step"]
    assert "reused" not in again


def test_training_split_auc_is_read_from_the_hook_rows(study, tmp_path):
    rows = [
        {"step": 10, "dev/rsum": 1.0},
        {"step": 20, "hook/net_a/split_auc": 0.9, "hook/net_b/split_auc": 0.1},
        {"step": 30, "hook/net_a/split_auc": 0.8},
        {"step": 30, "hook/net_a/split_auc": 0.8},  # a resumed run logs an epoch again
        {"step": 40, "hook/net_a/split_auc": 0.7},
    ]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    got = study.hook_split_auc(str(tmp_path), best_step=40)  # epoch 30..40 used step 30's
    assert got == {
        "train_split_auc_first": 0.9,
        "train_split_auc_mean": 0.8,
        "train_split_auc_min": 0.7,
        "train_split_auc_at_best": 0.8,
    }
    assert "train_split_auc_at_best" not in study.hook_split_auc(str(tmp_path), best_step=20)
    assert study.hook_split_auc(str(tmp_path / "none"), best_step=1) == {}
