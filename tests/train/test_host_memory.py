"""The host allocator policy (`config.host_allocator`, jaxmr.train.host_memory)."""

import subprocess
import sys

import pytest

from jaxmr.train import loop
from jaxmr.train.host_memory import configure_host_allocator
from tests.train.toy import build_toy, toy_config


def test_bad_policy_names_the_key():
    with pytest.raises(ValueError, match=r"config.host_allocator must be one of .* 'mmap'"):
        configure_host_allocator("mmap")


def test_trainer_rejects_a_bad_policy_before_training(tmp_path):
    config = toy_config()
    config.host_allocator = "fast"
    with pytest.raises(loop.ConfigError, match="config.host_allocator"):
        loop.train_and_evaluate(build_toy(config), config, str(tmp_path / "run"))


def test_system_leaves_the_allocator_alone():
    assert configure_host_allocator("system") is False


@pytest.mark.e2e  # two fresh Python processes (make test-e2e, CI)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_stops_page_faults_on_reused_large_blocks():
    """In a fresh process: a 96 MiB block (the DisNCL step's temporaries are 94 MiB) freed and
    allocated again by a worker thread, as XLA's, faults its pages in every time under glibc's
    defaults (the thread's arena serves it with mmap / munmap), once under "keep"."""
    code = """
import ctypes, resource, sys, threading
from jaxmr.train.host_memory import configure_host_allocator
applied = configure_host_allocator(sys.argv[1])
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
n = 96 << 20
faults = []
def work():
    for _ in range(4):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(n)
        ctypes.memset(p, 1, n)
        libc.free(p)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
t = threading.Thread(target=work)
t.start()
t.join()
print(int(applied), min(faults[1:]))
"""
    out = {}
    for policy in ("system", "keep"):
        res = subprocess.run(
            [sys.executable, "-c", code, policy], capture_output=True, text=True, check=True
        )
        applied, faults = map(int, res.stdout.split())
        out[policy] = (applied, faults)
    if not out["keep"][0]:
        pytest.skip("mallopt unavailable (not glibc)")
    pages = (96 << 20) // 4096
    assert out["system"][1] > pages // 2  # every reuse faults the block in again
    assert out["keep"][1] < pages // 100  # reused without faults


def test_disncl_configs_keep_the_others_default_to_system():
    from configs import disncl_f30k, disncl_synthetic, ivae_synthetic, ncr_synthetic

    assert disncl_synthetic.get_config().host_allocator == "keep"
    assert disncl_f30k.get_config().host_allocator == "keep"
    assert ncr_synthetic.get_config().host_allocator == "system"
    assert ivae_synthetic.get_config().host_allocator == "system"
