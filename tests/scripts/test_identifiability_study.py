"""scripts/identifiability_study.py: `--import_rows` turns committed results.csv rows back into
the finished runs of a new workdir (no training)."""

import csv
import json
import os

import pytest

from tests.scripts.loader import load_script


@pytest.fixture(scope="module")
def study():
    return load_script("identifiability_study")


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_imported_rows_are_finished_runs_read_back_as_written(study, tmp_path):
    base = dict(benchmark="synthetic", setting="L4_d5_D5", depth=4, d=5, D=5, model="ivae",
                budget="config", steps=4000, seconds=95.3, sap="", failed="")  # fmt: skip
    rows = [base | {"seed": s, "data_seed": k, "mcc_strong": 0.1 * k + 0.01 * s}
            for k in (1, 2) for s in (0, 1)]  # fmt: skip
    rows.append(base | {"seed": 0, "data_seed": 1, "model": "vae"})
    _write(tmp_path / "old.csv", rows)
    args = study.parse_args([f"--workdir={tmp_path / 'w'}", "--settings=L4_d5_D5",
                             "--data_seeds=1,2,3", "--budget=config", "--models=ivae",
                             "--seeds=0,1"])  # fmt: skip
    jobs = study.build_jobs(args)
    assert study.import_rows(jobs, [str(tmp_path / "old.csv")]) == 4  # draw 3 is not in it
    job = next(j for j in jobs if (j["data_seed"], j["seed"]) == (2, 1))
    row = study.run_one(job)  # read back, not trained
    assert row["mcc_strong"] == pytest.approx(0.21) and row["seed"] == 1
    assert row["data_seed"] == 2 and row["steps"] == 4000 and "sap" not in row
    assert not os.path.exists(os.path.join(jobs[-1]["workdir"], "result.json"))  # draw 3
    # an existing result is never overwritten; another step count matches nothing
    with open(os.path.join(job["workdir"], "result.json"), "w") as f:
        json.dump({"kept": True}, f)
    assert study.import_rows(jobs, [str(tmp_path / "old.csv")]) == 0
    assert study.run_one(job) == {"kept": True}
    args = study.parse_args([f"--workdir={tmp_path / 'w2'}", "--settings=L4_d5_D5",
                             "--data_seeds=1", "--budget=config", "--models=ivae"])  # fmt: skip
    jobs2 = study.build_jobs(args)
    assert study.import_rows(jobs2, [str(tmp_path / "old.csv")], steps=2000) == 0
    with pytest.raises(SystemExit, match="lacks the columns"):
        _write(tmp_path / "bad.csv", [{"setting": "x"}])
        study.import_rows(jobs2, [str(tmp_path / "bad.csv")])
