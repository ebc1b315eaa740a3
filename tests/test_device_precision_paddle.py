"""Where and in what precision the Paddle train scripts run (paddle_impl/session.py):
``--device cpu|gpu|gpu:N`` and ``--amp``. Paddle 3.3.1 has no mixed precision on the CPU:
``paddle.amp.auto_cast`` there warns and runs every op in float32, bfloat16 or not, so
``--amp`` on the CPU ends with one line, as does a GPU asked of this CPU build, before the
run folder is made. (On a GPU, ``--amp`` is float16 auto_cast O1 with a GradScaler, the
code path every CPU run takes with both switched off.)"""
import argparse
import importlib

import numpy as np
import paddle
import pytest

from paddle_impl.session import NO_CPU_AMP, join_processes

SCRIPTS = ("paddle_impl.train_attention", "paddle_impl.train_alexnet",
           "paddle_impl.train_upanets", "paddle_impl.train_san")
REFUSED = {  # flags -> the line that ends the run on this CPU-only Paddle
    "gpu": (["--device", "gpu"], "error: --device gpu: this Paddle is built without CUDA (CPU only)"),
    "gpu:1": (["--device", "gpu:1"], "error: --device gpu:1: this Paddle is built without CUDA (CPU only)"),
    "cuda": (["--device", "cuda"], "error: --device cuda: expected cpu, gpu or gpu:N"),
    "amp": (["--amp"], "error: " + NO_CPU_AMP),
}
needs_cpu_build = pytest.mark.skipif(paddle.device.is_compiled_with_cuda(),
                                     reason="this Paddle is built with CUDA")


@needs_cpu_build
@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("module", SCRIPTS)
def test_what_this_paddle_cannot_run_is_one_line(module, case, tmp_path, capsys):
    flags, line = REFUSED[case]
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main([*flags, "--log-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and line in err.splitlines() and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_amp_needs_float32_weights(tmp_path, capsys):
    from paddle_impl.train_attention import main
    with pytest.raises(SystemExit) as exit_:
        main(["--amp", "--dtype", "float64", "--log-dir", str(tmp_path / "run")])
    assert exit_.value.code == 2
    assert "error: --amp trains float32 weights, not --dtype float64" in capsys.readouterr().err


@needs_cpu_build
def test_one_process_runs_on_the_cpu_by_default():
    for device in (None, "cpu"):
        with join_processes(argparse.Namespace(device=device, amp=False)) as processes:
            assert processes == (0, 1, "cpu", None) and paddle.get_device() == "cpu"


def test_cpu_autocast_is_float32(recwarn):
    """Why --amp is refused on the CPU: under ``auto_cast`` (O1, bfloat16) a convolution,
    BatchNorm and matmul give float32, bit for bit the float32 result, and Paddle has no
    bfloat16 CPU kernel for them to cast to (a Paddle that autocasts on the CPU fails here:
    --amp could then run there)."""
    paddle.set_device("cpu")
    paddle.seed(0)
    layers = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4),
                                  paddle.nn.Flatten(), paddle.nn.Linear(4 * 6 * 6, 5))
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    float32 = layers(x).numpy()
    with paddle.amp.auto_cast(level="O1", dtype="bfloat16"):
        autocast = layers(x)
    assert autocast.dtype == paddle.float32 and np.array_equal(autocast.numpy(), float32)
    assert any("makes no effect" in str(w.message) for w in recwarn)
    with pytest.raises(RuntimeError, match="kernel `conv2d` is not registered"):
        paddle.nn.functional.conv2d(x.astype("bfloat16"), layers[0].weight.astype("bfloat16"))
