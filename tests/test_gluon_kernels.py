"""``gluon_impl.kernels``: MXNet's fused operators are built once per machine and source into
a library that ``mx.library.load`` registers, loaded from the cache afterwards, and replaced
by the composed operations, with one line on stderr, where they cannot be built. (The cache
and its lock are ``common.toolchain.cached_build``'s, tested with Paddle's kernels in
``tests/test_paddle_kernels.py``; the values: ``parity_tests/test_upanets.py``, which runs
the layer norm fused and composed.)"""
import os
import subprocess
import sys

import pytest

from common.toolchain import cxx_compiler
from gluon_impl import kernels

needs_compiler = pytest.mark.skipif(cxx_compiler() is None, reason="no C++ compiler here")


def test_without_a_compiler_nothing_is_built(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kernels.load.__wrapped__("layer_norm") is False
    assert not any(tmp_path.iterdir())


@needs_compiler
def test_a_source_that_does_not_build_leaves_the_composed_operations(monkeypatch, tmp_path, capfd):
    (tmp_path / "broken.cc").write_text('#include "mxnet/lib_api.h"\nthis is not C++;\n')
    monkeypatch.setattr(kernels, "SOURCES", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert kernels.load.__wrapped__("broken") is False
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines[0].startswith("building MXNet's fused broken kernel")
    assert lines[-1].startswith("warning: MXNet's fused broken kernel did not build (RuntimeError: "
                                "the C++ compiler exited with status"), lines
    log = lines[-1].rsplit("see ", 1)[1].split("): ")[0]
    assert "error" in open(log).read()
    assert not list((tmp_path / "cache").rglob("*.so"))


@needs_compiler
def test_a_built_kernel_is_loaded_from_the_cache_by_a_later_process(tmp_path):
    """The first process builds (and says so), the second loads, in silence, and both get
    the operator, as an NDArray function and in a hybridized block's graph."""
    code = ("from gluon_impl import kernels; import mxnet as mx; "
            "assert kernels.load('layer_norm'); x = mx.nd.random.uniform(shape=(2, 3, 4, 4)); "
            "block = mx.gluon.nn.HybridLambda(lambda F, t: F.layer_norm_chw(t)); "
            "block.hybridize(); y = mx.nd.layer_norm_chw(x); "
            "print((y - block(x)).abs().max().asscalar(), y.reshape((2, -1)).mean(axis=1).abs().max().asscalar() < 1e-6)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0 and run.stdout.strip() == "0.0 True", run.stderr[-2000:]
    assert "building MXNet's fused layer_norm kernel" in runs[0].stderr
    assert "building" not in runs[1].stderr
    assert len(list((tmp_path / "attention-ports" / "mxnet-kernels").glob("layer_norm-*/layer_norm.so"))) == 1


@needs_compiler
def test_the_fused_operator_is_used_on_the_cpu_only(monkeypatch):
    """On an NDArray it follows the array's context; in a graph (built before its context
    is known) it is used only where MXNet sees no GPU."""
    import mxnet as mx
    assert kernels.for_data("layer_norm", mx.nd, mx.nd.zeros((1, 2)))
    assert kernels.for_data("layer_norm", mx.sym, mx.sym.var("x"))
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 1)
    assert not kernels.for_data("layer_norm", mx.sym, mx.sym.var("x"))
