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
    log = lines[-1].rsplit("see ", 1)[1].split("): ")[0]
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
    assert kernels.load("norm") is not None
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


@needs_compiler
def test_a_cache_that_cannot_be_written_leaves_the_composed_operations(monkeypatch, tmp_path, capfd):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert kernels.load.__wrapped__("simam") is None
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("warning: Paddle's fused simam kernel did not build (") and "composed" in line
