"""The host allocator policy of a training process (`config.host_allocator`).

On the CPU backend every jitted step allocates its temporaries with the C library's `malloc`
and frees them at the end. glibc serves large blocks with fresh `mmap`s and hands them back
with `munmap` (and trims the heap's free top), so each step touches new pages: the DisNCL step
at the offline benchmark's shapes took ~24,000 minor page faults a step, and its CPU time went
from 159 ms to ~120 ms when the memory was kept instead (docs/performance.md, "DisNCL step").

  "keep"    (default) glibc's `mallopt`: no `mmap` for large blocks (M_MMAP_MAX = 0) and no
            trimming of the heap's free top (M_TRIM_THRESHOLD = 2 GiB - 1): freed blocks are
            reused by the next step without page faults. The process keeps its peak heap.
            A no-op off Linux/glibc (where `mallopt` is missing).
  "system"  the C library's defaults, untouched.

The setting is process-wide and applies to allocations made after it (PyTorch's, NumPy's as
well as XLA's); `jaxmr.train.loop.train_and_evaluate` applies it before building the step.
"""

from __future__ import annotations

import ctypes
import sys

POLICIES = ("keep", "system")

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


def configure_host_allocator(policy: str) -> bool:
    """Applies `policy` (one of `POLICIES`) to this process; True if the C library's settings
    were changed."""
    if policy not in POLICIES:
        raise ValueError(f"config.host_allocator must be one of {POLICIES}, got {policy!r}")
    if policy == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_MAX, 0)) & bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


__all__ = ["POLICIES", "configure_host_allocator"]
