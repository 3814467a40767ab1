"""`bench/accelerator.sh --dry-run`: the prepared accelerator benchmark runs end to end on CPU at
tiny sizes and writes its JSON and markdown table (no timing is asserted)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.e2e
def test_accelerator_dry_run_writes_json_and_markdown(tmp_path):
    out = tmp_path / "acc"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHON"] = sys.executable
    proc = subprocess.run(
        ["bash", os.path.join(REPO, "bench", "accelerator.sh"), "--dry-run", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "devices.txt").read_text().startswith("date: ")
    res = json.loads((out / "accelerator.json").read_text())
    assert res["dry_run"] is True
    sec = res["sections"]
    assert sec["devices"]["platform"] == "cpu" and sec["devices"]["local_device_count"] == 1
    for shape in ("default", "recipe"):
        row = sec["ivae_step"]["shapes"][shape]
        assert row["ms"]["median"] > 0 and row["gflop_per_step"] > 0 and row["compile_s"] > 0
    assert sec["ivae_step"]["shapes"]["default"]["target_dim"] == 5
    assert sec["ivae_step"]["shapes"]["recipe"]["target_dim"] == 64
    rows = sec["jacobian_cost"]["rows"]
    assert set(rows) == {"d=D=5/plain", "d=D=5/exact"}
    assert rows["d=D=5/exact"]["over_plain"] > 0 and rows["d=D=5/plain"]["over_plain"] == 1.0
    scaling = sec["scaling"]["rows"]
    assert list(scaling) == ["1"] and scaling["1"]["efficiency"] == 1.0
    # The DisNCL step at toy widths (JAX only where torch is not installed).
    dn = sec["disncl"]
    assert dn["returncode"] == 0, dn.get("error")
    tiny = dn["result"]["shapes"]["tiny"]
    assert tiny["jax_ms"]["median"] > 0 and tiny["phases"] == ["net_a", "net_b", "est"]
    md = (out / "accelerator.md").read_text()
    assert "DRY RUN" in md and "| default | 5 | 16 |" in md and "| d=D=5 | exact |" in md
    assert "Data-parallel weak scaling" in md and "DisNCL step (bench/disncl_step.py):" in md
    assert "| tiny (batch 16" in md
