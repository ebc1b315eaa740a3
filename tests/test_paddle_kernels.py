"""``paddle_impl.kernels``: Paddle's fused operators are built once per machine and source,
loaded from the cache afterwards, and replaced by the composed operations, with one line on
stderr, where they cannot be built. (Their values: ``parity_tests/test_simam.py``, which runs
SimAM fused and composed.)"""
import os
import subprocess
import sys

import pytest

from common.toolchain import cxx_compiler
from paddle_impl import kernels

needs_compiler = pytest.mark.skipif(cxx_compiler() is None, reason="no C++ compiler here")


def test_without_a_compiler_nothing_is_built(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kernels.load.__wrapped__("simam") is None
    assert not any(tmp_path.iterdir())


@needs_compiler
def test_a_source_that_does_not_build_leaves_the_composed_operations(monkeypatch, tmp_path, capfd):
    (tmp_path / "broken.cc").write_text('#include "paddle/extension.h"\nthis is not C++;\n')
    monkeypatch.setattr(kernels, "SOURCES", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert kernels.load.__wrapped__("broken") is None
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines[0].startswith("building Paddle's fused broken kernel")
    assert lines[-1].startswith("warning: Paddle's fused broken kernel did not build"), lines
    log = lines[-1].split("see ")[1].split(")")[0]
    assert "error" in open(log).read()


@needs_compiler
def test_a_built_kernel_is_loaded_from_the_cache_by_a_later_process(tmp_path):
    """The first process builds (and says so), the second loads, in silence, and both get
    the operator."""
    code = ("from paddle_impl import kernels; import paddle; "
            "m = kernels.load('simam'); x = paddle.rand([2, 3, 4, 4]); "
            "print(float((m.simam(x, 1e-4)[0] - x).abs().max()) > 0)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0 and run.stdout.strip() == "True", run.stderr[-2000:]
    assert "building Paddle's fused simam kernel" in runs[0].stderr
    assert "building" not in runs[1].stderr
    assert len(list((tmp_path / "attention-ports" / "paddle-kernels").glob("simam-*/simam/simam.so"))) == 1
