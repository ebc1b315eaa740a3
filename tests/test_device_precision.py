"""Where and in what precision the PyTorch train scripts run (pytorch_impl/session.py's
Placement): --device, --amp (bfloat16 autocast on the CPU; float16 with a GradScaler on CUDA,
the same code path) and --channels-last. On the CPU: a run with --amp (the Residual Attention
Network's included) starts from the same loss as float32 within AMP_LOSS_RTOL, stays finite,
and writes float32 weights that convert as before; the GradScaler steps the Residual
Attention recipe's MXNet SGD/NAG rule (its gradients of a summed loss rescaled by the
optimizer) as that rule steps unscaled, and skips a step whose gradients overflowed."""
import copy
import json

import numpy as np
import pytest
import torch

from parity_tests.tolerances import AMP_LOSS_RTOL, assert_close
from pytorch_impl.mxnet_optim import MXNetSGD
from pytorch_impl.session import Placement, add_device_args
from scripts.convert import main as convert

RUNS = {  # script, flags, conversion flags; one batch of 4: the first loss is the initial forward
    "alexnet": ("pytorch_impl.train_alexnet",
                ["--model", "alexnet_simam", "--epochs", "1", "--grid", "0"], []),
    "upanets": ("pytorch_impl.train_upanets", [], []),
    # one epoch (the recipe's default is 200), one thread (an oversubscribed multi-threaded
    # torch is many times slower)
    "attention": ("pytorch_impl.train_attention", ["--epochs", "1", "--threads", "1"], []),
    "san": ("pytorch_impl.train_san", ["--layers", "1", "1", "1", "1", "1"],
            ["--model", "san10_pairwise", "--model-kwargs",
             json.dumps({"layers": [1] * 5, "kernels": [3, 3, 3, 3, 1]})]),
}
TINY = ["--batch-size", "4", "--max-batches", "1", "--workers", "0", "--log-interval", "0"]


def first_record(folder):
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("family", [  # bfloat16 without AVX512 runs attention56 slowly
    pytest.param(f, marks=[pytest.mark.slow] if f == "attention" else []) for f in sorted(RUNS)])
def test_amp_starts_where_float32_does(family, tmp_path):
    module, flags, conversion = RUNS[family]
    main, threads = __import__(module, fromlist=["main"]).main, torch.get_num_threads()
    try:
        main([*TINY, *flags, "--log-dir", str(tmp_path / "fp32"), "--device", "cpu"])
        main([*TINY, *flags, "--log-dir", str(tmp_path / "amp"), "--amp", "--channels-last"])
    finally:  # a run's --threads would stay this process's
        torch.set_num_threads(threads)
    fp32, amp = first_record(tmp_path / "fp32"), first_record(tmp_path / "amp")
    assert np.isfinite(amp["train_loss"]) and np.isfinite(amp["val_loss"])
    assert abs(amp["train_loss"] - fp32["train_loss"]) <= AMP_LOSS_RTOL * fp32["train_loss"]
    assert fp32["train_loss"] != amp["train_loss"]  # autocast did run in bfloat16
    state = torch.load(tmp_path / "amp" / "model-last.pth", weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    assert all(v.isfinite().all() for v in state.values() if v.is_floating_point())  # after a step
    assert convert([str(tmp_path / "amp" / "model-last.pth"), str(tmp_path / "amp.pdparams"),
                    *conversion]) == 0


def test_a_missing_gpu_is_one_line(refusal):
    from pytorch_impl.train_upanets import main
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert refusal(main, [*TINY, "--device", "cuda:1", "--log-dir", "/nonexistent/never-written"]
                   ) == "error: --device cuda:1: no CUDA device is available"


def test_the_float16_scaler_steps_the_mxnet_rule():
    """Placement's backward with float16's GradScaler (here on the CPU, scale 2**12) steps
    MXNetSGD (NAG, weight decay, rescale_grad 1 / batch on a summed loss) as the unscaled
    backward and step do; a batch whose scaled gradients overflow leaves the weights and the
    momentum as they were and halves the scale."""
    args = add_device_args(__import__("argparse").ArgumentParser()).parse_args(["--device", "cpu"])
    placement = Placement(args)
    placement.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    torch.manual_seed(0)
    scaled = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    plain = copy.deepcopy(scaled)
    optimizers = [MXNetSGD(m.parameters(), lr=0.1, momentum=0.9, wd=1e-4, nesterov=True,
                           rescale_grad=1 / 4) for m in (scaled, plain)]
    for step in range(3):
        x = torch.randn(4, 6)
        placement.backward(scaled(x).square().sum(), optimizers[0])
        plain(x).square().sum().backward()
        optimizers[1].step()
        for m, opt in zip((scaled, plain), optimizers):
            opt.zero_grad()
    for (key, value), expected in zip(scaled.state_dict().items(), plain.state_dict().values()):
        assert_close(value, expected, np.float32, f"after 3 scaled steps: {key}")
    before = copy.deepcopy(scaled.state_dict())
    momentum = [optimizers[0].state[p]["momentum_buffer"].clone() for p in scaled.parameters()]
    placement.backward(scaled(torch.randn(4, 6)).square().sum() * 1e36, optimizers[0])
    assert all(torch.equal(v, before[k]) for k, v in scaled.state_dict().items())
    assert all(torch.equal(optimizers[0].state[p]["momentum_buffer"], m)
               for p, m in zip(scaled.parameters(), momentum))
    assert placement.scaler.get_scale() == 2.0 ** 11


def test_amp_needs_float32_weights(refusal):
    from pytorch_impl.train_attention import main
    assert refusal(main, ["--amp", "--dtype", "float64", "--log-dir", "/nonexistent/never-written"]
                   ) == "error: --amp computes from float32 weights; it cannot run with --dtype float64"
