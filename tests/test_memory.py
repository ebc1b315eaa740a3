"""``common.memory.keep_freed_memory``: tensors allocated and freed in turn reuse the
process's memory instead of faulting in new pages. Blocks come from ``malloc``, as the
frameworks' CPU allocators take them (numpy asks for huge pages, which fault less); each
process here is fresh (the test process itself keeps freed memory, as ``conftest.py``
sets)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CYCLES = """
import ctypes, resource, sys
from common.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = int(sys.argv[2]) << 20  # bytes per block: three alive at once, as an operation's inputs and output
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) * 4096 / size)
"""


def faulted_arrays(mode, mib):
    """Page faults of 20 cycles of three blocks of ``mib`` MiB, in blocks' worth of pages."""
    done = subprocess.run([sys.executable, "-c", CYCLES, mode, str(mib)], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
@pytest.mark.parametrize("mib", [8, 48])
def test_freed_memory_is_reused_without_page_faults(mib):
    """Measured: 60 blocks' worth of pages fault by default, at 8 MiB (glibc maps each block
    anew or trims the heap it grew) as at 48 MiB (above the mmap threshold's 32 MiB
    ceiling); 3.0 with the setting (the first cycle's three blocks, then none)."""
    assert faulted_arrays("default", mib) > 30
    assert faulted_arrays("keep", mib) < 4
