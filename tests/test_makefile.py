"""`make demo` on a fresh copy of the repository (no runs/ folder), in its smoke form.

The copy gets a stand-in `.venv` (a `python` that runs this interpreter, and the install
stamp) so make skips the pip install; everything else is the Makefile's own recipe.
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP = (".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info")


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_works_on_a_fresh_clone(tmp_path):
    repo = tmp_path / "jaxmr"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(*_SKIP))
    assert not (repo / "runs").exists()
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    (repo / ".venv" / ".installed").touch()  # newer than pyproject.toml: no reinstall

    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(repo))
    env.pop("XLA_FLAGS", None)
    res = subprocess.run(
        ["make", "demo", "CONFIG=configs/ivae_synthetic.py:smoke"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "eval of step 40:" in res.stdout and "'mcc_strong':" in res.stdout, res.stdout
    assert (repo / "runs" / "ivae_synthetic" / "eval" / "metrics.json").is_file()
