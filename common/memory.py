"""Freed memory kept in the process for the next tensor (glibc's malloc).

PyTorch and MXNet allocate their CPU tensors with ``malloc``, and Paddle's CPU allocator
does too. By default glibc returns a freed block above its mmap threshold (128 KiB, raised
at run time up to 32 MiB) to the system and trims the top of its heap beyond 128 KiB, so
the next tensor of that size is mapped anew and each of its 4 KiB pages faults when first
written. For an elementwise operation on a few MiB that costs more than the arithmetic.
:func:`keep_freed_memory` keeps blocks up to 32 MiB (the threshold's ceiling) and up to
1 GiB of free heap in the process, as a caching allocator does.

Measured on this machine (2 threads, 2026-12-04), medians of 51:
* Paddle, [2, 8, 8, 3472] float32 (an aggregation step of SAN's second stage): a product of
  two tensors 504 against 34 us, ``expand`` 706 against 59 us;
* Paddle, a softmax of [2, 8, 49, 3136] (SAN's pairwise weights): 16.0 against 9.0 ms;
* PyTorch, the five SimAMs of AlexNet-SimAM at batch 128, forward and backward, eagerly:
  64 against 51 ms.
The process then holds its peak heap until it ends, as the frameworks' GPU allocators do.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
KEPT_BLOCK = 32 << 20  # glibc's ceiling for the mmap threshold on 64-bit systems
KEPT_HEAP = 1 << 30


def keep_freed_memory():
    """Make glibc keep freed blocks up to 32 MiB and up to 1 GiB of free heap for reuse.
    Returns whether it did: False where the C library is not glibc (nothing changes)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        return False
    kept = [mallopt(parameter, value) == 1  # 1: set
            for parameter, value in ((M_MMAP_THRESHOLD, KEPT_BLOCK), (M_TRIM_THRESHOLD, KEPT_HEAP))]
    return all(kept)
