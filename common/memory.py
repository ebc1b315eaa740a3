"""Freed memory kept in the process for the next tensor (glibc's malloc).

PyTorch and MXNet allocate their CPU tensors with ``malloc``, and Paddle's CPU allocator
does too. By default glibc returns a freed block above its mmap threshold (128 KiB, raised
at run time up to 32 MiB) to the system and trims the top of its heap beyond 128 KiB, so
the next tensor of that size is mapped anew and each of its 4 KiB pages faults when first
written. For an elementwise operation on a few MiB that costs more than the arithmetic.
:func:`keep_freed_memory` takes every block from the heap (no mmap, whose threshold stops at
32 MiB) and keeps up to 1 GiB of free heap in the process, as a caching allocator does.

Measured on this machine (2 threads, 2026-12-04), medians of 51:
* Paddle, [2, 8, 8, 3472] float32 (an aggregation step of SAN's second stage): a product of
  two tensors 504 against 34 us, ``expand`` 706 against 59 us;
* Paddle, a softmax of [2, 8, 49, 3136] (SAN's pairwise weights): 16.0 against 9.0 ms;
* PyTorch, the five SimAMs of AlexNet-SimAM at batch 128, forward and backward, eagerly:
  64 against 51 ms.
Blocks above 32 MiB (the same machine's Intel Xeon successor, 2026-12-04, Paddle, [128, 96,
31, 31] float32, 47 MB, medians of 10), with blocks up to 32 MiB kept and with every block
from the heap: a product 15.4 against 4.0 ms, a sigmoid 38.7 against 21.3 ms, a 3x3
convolution to 96 channels 196 against 161 ms.
The process then holds its peak heap until it ends, as the frameworks' GPU allocators do.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
KEPT_HEAP = 1 << 30


def keep_freed_memory():
    """Make glibc take every block from the heap and keep up to 1 GiB of free heap for
    reuse. Returns whether it did: False where the C library is not glibc (nothing
    changes)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        return False
    kept = [mallopt(parameter, value) == 1  # 1: set
            for parameter, value in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEPT_HEAP))]
    return all(kept)
