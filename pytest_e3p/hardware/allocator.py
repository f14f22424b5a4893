"""Pinning glibc malloc's thresholds, the largest source of between-run noise found on a CPU.

glibc moves its mmap threshold as a process frees large blocks ("dynamic mmap threshold"), and
trims the heap top whenever more than the trim threshold is free. A model's activations are
blocks of 100 kB to tens of MB, so depending on the order of the first frees, one process keeps them
on the heap while an identical one maps and unmaps (and page-faults) them on every forward pass.
On the 2-core development VM, three identical processes ran levit_128s at 4.1, 5.6 and 6.2 ms/img;
with both thresholds pinned, three ran at 4.18-4.30 (README, "Where the noise comes from").

Setting either threshold with mallopt() turns the dynamic adjustment off. 32 MiB is the largest
mmap threshold glibc accepts on 64-bit; a trim threshold of 1 GiB keeps freed activations for the
next pass. Both only change where freed memory waits, not how much the model needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30


def pin_glibc_malloc() -> str:
    """Pin the thresholds; returns what the run records ("glibc malloc, thresholds pinned ..."),
    or why nothing was done (another C library, another system)."""
    if platform.system() != "Linux":
        return f"system malloc ({platform.system()}), not changed"
    libc_name, version = platform.libc_ver()
    if libc_name != "glibc":
        return "non-glibc malloc, not changed"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return f"glibc {version} malloc, thresholds could not be pinned"
    return f"glibc malloc, thresholds pinned (mmap {MMAP_THRESHOLD_BYTES >> 20} MiB, trim {TRIM_THRESHOLD_BYTES >> 30} GiB)"


def default_malloc() -> str:
    return "glibc malloc, default (adaptive) thresholds" if platform.libc_ver()[0] == "glibc" else "system malloc, not changed"
