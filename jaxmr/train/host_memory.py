"""The host allocator policy of a training process (`config.host_allocator`).

On the CPU backend every execution of a jitted step allocates its temporaries (one block: 94
MiB for the DisNCL step at the offline benchmark's shapes) with the C library's `malloc` and
frees them at the end. glibc serves large blocks with fresh `mmap`s and hands them back with
`munmap`, so each step faults every page of that block in again: 24,152 minor page faults a
step there, a fifth of the step's CPU time (docs/performance.md, "DisNCL step").

  "keep"    glibc's `mallopt`: one malloc arena for all threads (M_ARENA_MAX = 1; a
            thread's own arena is an `mmap`ed heap of at most 64 MiB that serves larger blocks
            with `mmap` whatever the settings), no `mmap` for large blocks (M_MMAP_MAX = 0)
            and no trimming of the heap's free top (M_TRIM_THRESHOLD = 2 GiB - 1): a freed
            block is reused by the next step without page faults. The process keeps its peak
            heap. A no-op off Linux/glibc (where `mallopt` is missing).
  "system"  (default) the C library's defaults, untouched.

"keep" is the choice of every DisNCL recipe at full size (`configs/disncl_synthetic.py`, not at
`:smoke`, and `configs/disncl_{f30k,coco,cc152k}.py`): it made the offline DisNCL step
1.27-1.33x faster on an idle machine (1.16x loaded), but the same step at toy widths (a few ms)
1.4x slower (one arena's lock shared by XLA's threads is the suspect, not measured apart), so
it is not the default.

The setting is process-wide and applies to allocations made after it (PyTorch's and NumPy's
as well as XLA's). A thread that has already allocated keeps its arena, so it must come before
JAX starts its CPU threads: `jaxmr.tasks.build_task` applies it first thing (and
`jaxmr.train.loop.train_and_evaluate` again, for tasks built otherwise; late, it still stops
the `mmap`s of the threads that use the main arena).
"""

from __future__ import annotations

import ctypes
import sys

POLICIES = ("keep", "system")

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
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
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return all([mallopt(option, value) for option, value in settings])


__all__ = ["POLICIES", "configure_host_allocator"]
