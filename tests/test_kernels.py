"""The fused CPU kernels of ``paddle_impl/kernels`` and ``gluon_impl/kernels``: built once per
machine and source (``common.toolchain.cached_build``), loaded from the cache afterwards, and
replaced by the composed operations, with one line on stderr, where they cannot be built.
(Their values: ``parity_tests/test_simam.py``, ``test_san.py``, ``test_upanets.py`` and
``test_attention.py``, which run them fused and composed.)"""
import os
import subprocess
import sys

import pytest

from common.toolchain import cached_build, cxx_compiler
from gluon_impl import kernels as gluon_kernels
from paddle_impl import kernels as paddle_kernels

needs_compiler = pytest.mark.skipif(cxx_compiler() is None, reason="no C++ compiler here")

# Per framework: its kernels module, its name in messages, a kernel, a line a source of that
# kernel starts with, what a later process prints using it, and the path of its build.
FRAMEWORKS = {
    "paddle": (paddle_kernels, "Paddle", "simam", '#include "paddle/extension.h"',
               "from paddle_impl import kernels; import paddle; "
               "m = kernels.load('simam'); x = paddle.rand([2, 3, 4, 4]); "
               "print(float((m.simam(x, 1e-4)[0] - x).abs().max()) > 0)",
               "paddle-kernels/simam-*/simam/simam.so"),
    "mxnet": (gluon_kernels, "MXNet", "layer_norm", '#include "library.h"',
              "from gluon_impl import kernels; import mxnet as mx; "
              "assert kernels.load('layer_norm'); x = mx.nd.random.uniform(shape=(2, 3, 4, 4)); "
              "block = mx.gluon.nn.HybridLambda(lambda F, t: F.layer_norm_chw(t)); "
              "block.hybridize(); y = mx.nd.layer_norm_chw(x); "
              "print((y - block(x)).abs().max().asscalar() == 0 and "
              "y.reshape((2, -1)).mean(axis=1).abs().max().asscalar() < 1e-6)",
              "mxnet-kernels/layer_norm-*/layer_norm.so"),
}
parametrize = pytest.mark.parametrize("framework", list(FRAMEWORKS))


@parametrize
def test_without_a_compiler_nothing_is_built(framework, monkeypatch, tmp_path):
    kernels, _, name, *_ = FRAMEWORKS[framework]
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert not kernels.load.__wrapped__(name)
    assert not any(tmp_path.iterdir())


@needs_compiler
@parametrize
def test_a_source_that_does_not_build_leaves_the_composed_operations(framework, monkeypatch,
                                                                     tmp_path, capfd):
    kernels, label, name, include, *_ = FRAMEWORKS[framework]
    for header in os.listdir(kernels.SOURCES):  # the real headers, beside the broken source
        if header.endswith(".h"):
            (tmp_path / header).write_bytes(open(os.path.join(kernels.SOURCES, header), "rb").read())
    (tmp_path / "broken.cc").write_text(f"{include}\nthis is not C++;\n")
    monkeypatch.setattr(kernels, "SOURCES", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert not kernels.load.__wrapped__("broken")
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"building {label}'s fused broken kernel")
    assert lines[-1].startswith(f"warning: {label}'s fused broken kernel did not build"), lines
    log = lines[-1].rsplit("see ", 1)[1].split("): ")[0]
    assert "error" in open(log).read()
    assert not list((tmp_path / "cache").rglob("*.so"))


@needs_compiler
@parametrize
def test_a_built_kernel_is_loaded_from_the_cache_by_a_later_process(framework, tmp_path):
    """The first process builds (and says so), the second loads, in silence, and both get
    the operator (MXNet's as an NDArray function and in a hybridized block's graph)."""
    _, label, name, _, code, product = FRAMEWORKS[framework]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0 and run.stdout.strip() == "True", run.stderr[-2000:]
    assert f"building {label}'s fused {name} kernel" in runs[0].stderr
    assert "building" not in runs[1].stderr
    assert len(list((tmp_path / "attention-ports").glob(product))) == 1


@needs_compiler
@parametrize
def test_a_cache_that_cannot_be_written_leaves_the_composed_operations(framework, monkeypatch,
                                                                       tmp_path, capfd):
    kernels, label, name, *_ = FRAMEWORKS[framework]
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert not kernels.load.__wrapped__(name)
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"warning: {label}'s fused {name} kernel did not build (") and "composed" in line


@needs_compiler
def test_nothing_of_a_build_reaches_the_callers_output(monkeypatch, tmp_path, capsys):
    """What a build prints, through Python's ``sys.stdout`` (here pytest's capture, not the
    descriptor: Paddle's builder printed its steps into ``predict --json -``'s JSON there)
    or through the descriptors (a compiler), goes to its log; the caller sees the one line
    saying a build runs, on stderr."""
    (tmp_path / "quiet.cc").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def build(folder):
        print("a step of the builder")
        os.write(1, b"a compiler's line\n")
        return "built"
    assert cached_build("Test", str(tmp_path), "quiet", (), build, "quiet.so") == "built"
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("building Test's fused quiet kernel") and err.count("\n") == 1
    log = next((tmp_path / "cache").rglob("build.log")).read_text()
    assert "a step of the builder" in log and "a compiler's line" in log


@needs_compiler
def test_mxnet_operators_are_used_on_the_cpu_only(monkeypatch):
    """They have no GPU implementation: on an NDArray the choice follows the array's context;
    in a graph (built before its context is known) they are used only where MXNet sees no
    GPU."""
    import mxnet as mx
    assert gluon_kernels.for_data("layer_norm", mx.nd, mx.nd.zeros((1, 2)))
    assert gluon_kernels.for_data("layer_norm", mx.sym, mx.sym.var("x"))
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 1)
    assert not gluon_kernels.for_data("layer_norm", mx.sym, mx.sym.var("x"))


@needs_compiler
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_norm_inference_is_one_fused_pass_with_the_same_values_and_gradients(dtype):
    """Inference with the running statistics (``channel_affine``): the output and the
    gradients of the input, weight and bias equal those of Paddle's own kernel, and in
    float64 the formula with the exact epsilon (Paddle's kernel rounds it to float32)."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from paddle_impl.layers import BatchNorm2D
    from parity_tests.tolerances import assert_close
    assert paddle_kernels.load("norm") is not None
    rng = np.random.default_rng(0)
    default = paddle.get_default_dtype()
    paddle.set_default_dtype(dtype)
    try:
        bn = BatchNorm2D(6)
    finally:
        paddle.set_default_dtype(default)
    bn.eval()
    for tensor, value in ((bn._mean, rng.standard_normal(6)), (bn._variance, rng.random(6) + 1e-3),
                          (bn.weight, rng.random(6) + 0.5), (bn.bias, rng.standard_normal(6))):
        tensor.set_value(value.astype(dtype))
    x = paddle.to_tensor(rng.standard_normal((3, 6, 5, 7)).astype(dtype), stop_gradient=False)
    upstream = paddle.to_tensor(rng.standard_normal((3, 6, 5, 7)).astype(dtype))
    fused = bn(x)
    kernel = F.batch_norm(x, bn._mean, bn._variance, bn.weight, bn.bias, training=False,
                          epsilon=bn._epsilon)
    grads = [paddle.grad([y], [x, bn.weight, bn.bias], [upstream]) for y in (fused, kernel)]
    tolerance = np.float32 if dtype == "float32" else np.float64
    if dtype == "float64":  # Paddle's kernel: epsilon in float32, 1e-13 off here
        m, v, w, b = (t.numpy()[None, :, None, None]
                      for t in (bn._mean, bn._variance, bn.weight, bn.bias))
        assert_close(fused, (x.numpy() - m) / np.sqrt(v + 1e-5) * w + b, np.float64, "formula")
        tolerance = np.float32
    assert_close(fused, kernel, tolerance, "batch norm output")
    for name, a, b in zip(("input", "weight", "bias"), *grads):
        assert_close(a, b, tolerance, f"gradient of the {name}")
