"""``--compile``: the PyTorch train scripts and the predict command run the model through
torch.compile (inductor, generated C++ kernels on the CPU) and give the eager results within
the float32 tolerance. AlexNet-SimAM is the case: its graph compiles fastest of the registered
models (its training graph about 45 s on 2 busy cores, UPANets16's 190 s), and it has what
compiling can change: dropout (compiled, it draws the same masks from torch's generator as
eager) and SimAM's autograd.Function with its written gradient."""
import argparse
import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from common.data import load_digits
from parity_tests.tolerances import assert_close, assert_float32_roundoff
from pytorch_impl import create_model
from pytorch_impl.session import Placement, add_device_args

pytestmark = pytest.mark.slow  # each compiled graph takes inductor tens of seconds here
SCRIPT = ["--model", "alexnet_simam", "--batch-size", "4", "--max-batches", "1", "--epochs", "1",
          "--workers", "0", "--grid", "0", "--device", "cpu"]


def test_a_compiled_training_step_equals_the_eager_one():
    """Train-mode logits (dropout on), the loss and every gradient of one batch: compiled
    float32 is as close to eager float64 as eager float32 is (the whole-network policy of
    ``parity_tests/tolerances.py``: inductor fuses and reorders the float32 arithmetic)."""
    torch.manual_seed(0)
    eager = create_model("alexnet_simam", num_classes=10)
    model, eager64 = create_model("alexnet_simam", num_classes=10), copy.deepcopy(eager).double()
    model.load_state_dict(eager.state_dict())
    args = add_device_args(argparse.ArgumentParser()).parse_args(["--device", "cpu", "--compile"])
    net = Placement(args).parallel(model)
    assert net is not model and net._orig_mod is model
    x, y = torch.randn(4, 3, 128, 128), torch.tensor([0, 3, 5, 9])
    results = []
    for module, weights, dtype in ((eager, eager, torch.float32), (net, model, torch.float32),
                                   (eager64, eager64, torch.float64)):
        module.train()
        torch.manual_seed(1)  # the same dropout masks (in float64 too)
        logits = module(x.to(dtype))
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        results.append({"logits": logits.detach(), "loss": loss.detach(),
                        **{k: p.grad for k, p in weights.named_parameters()}})
    eager32, compiled32, eager64 = results
    torch.manual_seed(2)  # other masks give other logits: the equality needs the same ones
    with torch.no_grad():
        assert not torch.allclose(eager(x), eager32["logits"], rtol=1e-3, atol=0)
    for name in eager32:
        assert_float32_roundoff(compiled32[name], eager32[name], eager64[name], f"compiled {name}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The AlexNet-SimAM train script's first batch, eager and with ``--compile``, each in
    its own process (the scripts' TensorBoard writer must not meet mxboard)."""
    root = tmp_path_factory.mktemp("compile")
    for name, flags in (("eager", []), ("compiled", ["--compile"])):
        done = subprocess.run([sys.executable, "-m", "pytorch_impl.train_alexnet", *SCRIPT,
                               *flags, "--log-dir", str(root / name)],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return root


def test_the_train_script_compiles_and_starts_where_eager_does(runs):
    first = {name: json.loads((runs / name / "metrics.jsonl").read_text().splitlines()[0])
             for name in ("eager", "compiled")}
    assert_close(first["compiled"]["train_loss"], first["eager"]["train_loss"], np.float32,
                 "first batch's loss")
    state = torch.load(runs / "compiled" / "model-last.pth", weights_only=True)
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in state)  # the model's names
    assert state.keys() == create_model("alexnet_simam", num_classes=10).state_dict().keys()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of real digits as the PNG files a user would classify."""
    folder = tmp_path_factory.mktemp("images")
    for i, pixels in enumerate(load_digits("test").images[:6]):
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


def test_predict_compiled_gives_the_eager_probabilities(runs, images, capsys):
    from scripts.predict import main
    checkpoint = runs / "eager" / "model-last.pth"
    probabilities = {}
    for name, flags in (("eager", []), ("compiled", ["--compile"])):
        assert main([str(checkpoint), str(images), "-k", "10", "--json", "-", *flags]) == 0
        rows = json.loads(capsys.readouterr().out)
        probabilities[name] = np.array([[p for _, p in sorted((t["index"], t["probability"])
                                                             for t in r["top"])] for r in rows])
    assert probabilities["eager"].shape == (6, 10)
    assert_close(probabilities["compiled"], probabilities["eager"], np.float32, "probabilities")


def test_predict_refuses_compile_for_another_framework(runs, images, capsys):
    from scripts.predict import main
    assert main([str(runs / "eager" / "model-last.pth"), str(images), "--framework", "paddle",
                 "--compile"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --compile: torch.compile runs PyTorch models; this one runs in paddle "
        "(--framework pytorch converts it)")


def test_the_attention_resize_compiles_without_numpy_in_the_graph(monkeypatch):
    """Attention's bilinear resize reads cached, read-only NumPy matrices, which dynamo fails
    to take into a graph: ``--compile`` of every Attention model stopped there, here (torch
    2.13, NumPy 1.23) at a matrix's second use and on a CUDA machine (torch 2.11, NumPy 2.5)
    at its first. Arrays whose writeable flag cannot be restored (views of a read-only base,
    as NumPy 2 treats the cached ones) make it fail at once: two resizes of different sizes
    in one compiled function give the eager result."""
    from common.attention_arch import bilinear_matrix
    from pytorch_impl.models import attention

    def refusing(size_in, size_out):
        return bilinear_matrix(size_in, size_out)[:]  # numpy refuses to make it writeable

    with pytest.raises(ValueError):
        refusing(4, 8).flags.writeable = True
    monkeypatch.setattr(attention, "bilinear_matrix", refusing)
    torch._dynamo.reset()

    def twice(x, first, second):
        resize = attention.bilinear_resize_like
        return resize(resize(x, first), second) * 2

    x = torch.randn(2, 3, 4, 5)
    first, second = torch.zeros(1, 1, 8, 10), torch.zeros(1, 1, 7, 9)
    compiled = torch.compile(twice)(x, first, second)
    assert compiled.shape == (2, 3, 7, 9)
    assert_close(compiled, twice(x, first, second), np.float32, "compiled resizes")
