"""``common.memory.keep_freed_memory``: tensors allocated and freed in turn reuse the
process's memory instead of faulting in new pages (each process here is fresh: the test
process itself keeps freed memory, as ``conftest.py`` sets)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CYCLES = """
import resource, sys
import numpy as np
from common.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
size = 8 << 20  # bytes per array: three alive at once, as an operation's inputs and output
np.ones(size // 8)
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    arrays = [np.empty(size // 8) for _ in range(3)]
    for a in arrays:
        a.fill(1.0)
    del arrays, a
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) * 4096 / size)
"""


def faulted_arrays(mode):
    """Page faults of 20 cycles of three 8 MiB arrays, in arrays' worth of pages."""
    done = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_freed_memory_is_reused_without_page_faults():
    """Measured: 14.8 arrays' worth of pages fault by default (glibc trims the heap it grew),
    0.5 with the setting (the first cycle's growth)."""
    assert faulted_arrays("default") > 5
    assert faulted_arrays("keep") < 1
