"""ONNX export (pytorch_impl/export.py, scripts/export.py): one registered PyTorch model per
structure (the shallowest of each family variant), with random weights and non-trivial BatchNorm statistics, exported from a trace on one image
and run by onnxruntime on a batch of 3 (so the batch axis is symbolic), gives torch's logits
within the float32 parity tolerance; SAN's export form of its operators equals the autograd
Functions in float64; and the CLI writes, checks and refuses as documented."""
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

import pytorch_impl
from common.checkpoint import save_safetensors
from common.san_recipe import SMALL_IMAGE_KERNELS
from common.specs import input_size
from parity_tests.tolerances import assert_close
from pytorch_impl import san_ops
from pytorch_impl.export import DEFAULT_OPSET, export_onnx, run_onnx
from pytorch_impl.weights import predict
from scripts.export import main
from tests.test_san_ops import GEOMETRIES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _structures():
    """One model per structure: the shallowest of every family variant (a deeper Attention,
    UPANets or SAN repeats the same modules, so it exports through the same operators; every
    model of them took 4.5 minutes of the suite, Attention-452 alone 49 s, measured)."""
    first = {}
    for name in sorted(pytorch_impl.list_models(), key=lambda n: int(re.sub(r"\D", "", n) or 0)):
        first.setdefault(re.sub(r"\d+", "", name), name)
    return sorted(first.values())


def _cases():
    """(name, kwargs, input side): one model per structure at its spec's side, UPANets at 64
    and SAN with the main job's small-image kernels at 32x32 (its last stages are 2x2 and 1x1)."""
    cases = [pytest.param(name, {}, None, id=name) for name in _structures()]
    return cases + [pytest.param("upanets16", {"img_size": 64}, None, id="upanets16-img64"),
                    pytest.param("san10_pairwise", {"kernels": SMALL_IMAGE_KERNELS, "num_classes": 10}, 32,
                                 id="san10_pairwise-32")]


def random_model(name, seed=0, **kwargs):
    """Model ``name`` with its random initial weights and BatchNorms that are not the identity
    in eval mode: random scales, shifts and running statistics, in the ranges of
    parity_tests/test_attention.py's ``perturb_norms`` (scales in [0.25, 0.5] keep the deep
    pre-activation networks' logits O(1); with [0.5, 1.5] Attention-452's reach 460 and
    torch's own float32 is 0.84 float32 tolerances off its float64, measured)."""
    torch.manual_seed(seed)
    net = pytorch_impl.create_model(name, **kwargs)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.25, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
    return net.eval()


def _images(batch, size, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("name, kwargs, size", _cases())
def test_onnx_logits_equal_torch_on_another_batch_size(name, kwargs, size, tmp_path):
    net = random_model(name, **kwargs)
    size = size or input_size(name, **kwargs)
    path = tmp_path / f"{name}.onnx"
    export_onnx(net, path, size)
    images = _images(3, size)
    actual = run_onnx(path, images)
    expected = predict(net, images)
    assert actual.shape[0] == 3
    assert_close(actual, expected, np.float32, f"{name} onnxruntime vs torch")


# --------------------------------------------------------------------------- SAN's export form
def _san_inputs(geometry, c=4, c_w=2, seed=2):
    k, s, d, p, h, w = geometry
    out = san_ops.output_size(h, k, s, p, d) * san_ops.output_size(w, k, s, p, d)
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, c, h, w, dtype=torch.float64, generator=g),
            torch.randn(2, c, h, w, dtype=torch.float64, generator=g),
            torch.randn(2, c_w, k * k, out, dtype=torch.float64, generator=g))


@pytest.mark.parametrize("pad_mode", [san_ops.ZERO_PAD, san_ops.REFLECT_PAD])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_san_export_form_equals_the_operators(geometry, pad_mode):
    """(kernel, stride, dilation, padding, height, width) of test_san_ops: strides 1 and 2,
    dilation 2, odd sizes, SAN's padding and a smaller one; 4 channels sharing 2 weights."""
    k, s, d, p, _, _ = geometry
    x1, x2, w = _san_inputs(geometry)
    ops = {"aggregation": lambda: san_ops.aggregation(x1, w, k, s, p, d, pad_mode),
           "subtraction": lambda: san_ops.subtraction(x1, k, s, p, d, pad_mode),
           "subtraction2": lambda: san_ops.subtraction2(x1, x2, k, s, p, d, pad_mode)}
    for what, op in ops.items():
        expected = op()
        with san_ops.export_mode():
            actual = op()
        assert_close(actual, expected, np.float64, f"{what} export form, pad_mode {pad_mode}")


def test_export_mode_selects_the_form_only_inside_the_block():
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 2, 9, 25, dtype=torch.float64)
    with san_ops.export_mode():
        inside = san_ops.aggregation(x, w, 3, 1, 1, 1).grad_fn
    after = san_ops.aggregation(x, w, 3, 1, 1, 1).grad_fn
    assert type(inside).__name__ != "_AggregationBackward"
    assert type(after).__name__ == "_AggregationBackward"


class _SanOps(torch.nn.Module):
    """SAN's three operators in one graph (kernel 3, stride 2, dilation 2, padding 2, on an odd
    input size): the subtractions of a 1x1 projection of the input weight the aggregation of
    another, whose 4 channels share 2 weight channels."""

    def __init__(self, pad_mode):
        super().__init__()
        self.pad_mode = pad_mode
        self.relation, self.values = torch.nn.Conv2d(3, 2, 1), torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        args = (3, 2, 2, 2, self.pad_mode)
        y = self.relation(x)
        weights = torch.softmax(san_ops.subtraction2(y, y.flip(3), *args) + san_ops.subtraction(y, *args), 2)
        return san_ops.aggregation(self.values(x), weights, *args).flatten(1)


@pytest.mark.parametrize("pad_mode", [san_ops.ZERO_PAD, san_ops.REFLECT_PAD])
def test_san_operators_export_in_every_padding_mode(pad_mode, tmp_path):
    torch.manual_seed(0)
    net = _SanOps(pad_mode).eval()
    path = tmp_path / "ops.onnx"
    export_onnx(net, path, 7)
    images = _images(3, 7)
    assert_close(run_onnx(path, images), predict(net, images), np.float32, f"pad_mode {pad_mode}")


# --------------------------------------------------------------------------- the CLI
def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_numbers(out):
    """(max |logit difference|, tolerances) as ``--check`` prints them."""
    match = re.search(r"max \|logit difference\| (\S+) .*?, (\S+) float32 tolerances", out)
    assert match, out
    return float(match[1]), float(match[2])


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "upanets.pth"
    torch.save(random_model("upanets16", num_classes=7).state_dict(), path)
    return path


def test_cli_exports_and_checks_an_identified_checkpoint(checkpoint, tmp_path, capsys):
    out_path = tmp_path / "model.onnx"
    code, out, err = _run(capsys, checkpoint, "--onnx", out_path, "--check")
    assert code == 0, err
    assert "model upanets16 {'num_classes': 7}" in out and f"opset {DEFAULT_OPSET}" in out
    diff, units = _check_numbers(out)
    assert 0 <= units <= 1 and np.isfinite(diff), out
    model = onnx.load(str(out_path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # symbolic
    images = _images(2, 32)
    assert run_onnx(out_path, images).shape == (2, 7)


def test_cli_reads_other_formats(tmp_path, capsys):
    net = random_model("alexnet_simam", num_classes=5)
    source = tmp_path / "simam.safetensors"
    save_safetensors({k: v.numpy() for k, v in net.state_dict().items()}, source)
    code, out, err = _run(capsys, source, "--onnx", tmp_path / "simam.onnx", "--model", "alexnet_simam")
    assert code == 0, err
    images = _images(2, 128)
    assert_close(run_onnx(tmp_path / "simam.onnx", images), predict(net, images), np.float32, "from safetensors")


def test_cli_keeps_an_existing_output_unless_forced(checkpoint, tmp_path, capsys):
    out_path = tmp_path / "model.onnx"
    out_path.write_bytes(b"keep me")
    code, out, err = _run(capsys, checkpoint, "--onnx", out_path, "--model", "upanets16")
    assert code == 1 and err.count("\n") == 1 and "exists; pass --force" in err, err
    assert out_path.read_bytes() == b"keep me"
    code, out, err = _run(capsys, checkpoint, "--onnx", out_path, "--force", "--opset", "17")
    assert code == 0, err
    opsets = [o.version for o in onnx.load(str(out_path)).opset_import if o.domain in ("", "ai.onnx")]
    assert opsets == [17]
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_cli_exits_3_when_onnxruntime_disagrees(checkpoint, tmp_path, capsys, monkeypatch):
    import scripts.export
    monkeypatch.setattr(scripts.export, "run_onnx", lambda path, images: run_onnx(path, images) * 1.001)
    code, out, err = _run(capsys, checkpoint, "--onnx", tmp_path / "m.onnx", "--check")
    assert code == 3 and "DISAGREE" in out, out
    assert _check_numbers(out)[1] > 1


@pytest.mark.parametrize("source, options, message", [
    ("missing.pth", [], "missing.pth: no such file"),
    ("upanets.pth", ["--model", "resnet50"], "unknown model 'resnet50'"),
])
def test_cli_errors_are_one_line(source, options, message, checkpoint, tmp_path, capsys):
    code, out, err = _run(capsys, tmp_path / source, "--onnx", tmp_path / "m.onnx", *options)
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_module_entry_point_fails_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "scripts.export", str(tmp_path / "none.pt"),
                             "--onnx", str(tmp_path / "m.onnx")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path / 'none.pt'}: no such file"
