"""The conversion CLI on a small model mirrored in the three frameworks: every direction,
the file shapes people have, identification, and one clear error for every bad input."""
import os
import pickle
import re

import mxnet as mx
import numpy as np
import paddle
import pytest
import torch
from mxnet import gluon

import gluon_impl
import paddle_impl
import pytorch_impl
from common.checkpoint import load_gluon_params, load_pdparams, save_gluon_params
from common.specs import SPECS, ModelSpec
from parity_tests.tolerances import assert_close
from pytorch_impl.layers import BatchNorm2d
import scripts.convert as convert_cli
from scripts.convert import main


class TorchTiny(torch.nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), BatchNorm2d(4),
                                            torch.nn.ReLU())
        self.output = torch.nn.Linear(4, num_classes)

    def forward(self, x):
        return self.output(self.features(x).mean((2, 3)))


class GluonTiny(gluon.HybridBlock):
    def __init__(self, num_classes=10):
        super().__init__()
        with self.name_scope():
            self.features = gluon.nn.HybridSequential()
            self.features.add(gluon.nn.Conv2D(4, 3, padding=1, in_channels=3),
                              gluon.nn.BatchNorm(in_channels=4), gluon.nn.Activation("relu"))
            self.output = gluon.nn.Dense(num_classes, in_units=4)

    def hybrid_forward(self, F, x):
        return self.output(F.mean(self.features(x), axis=(2, 3)))


class PaddleTiny(paddle.nn.Layer):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1),
                                             paddle.nn.BatchNorm2D(4), paddle.nn.ReLU())
        self.output = paddle.nn.Linear(4, num_classes)

    def forward(self, x):
        return self.output(self.features(x).mean((2, 3)))


def _gluon_tiny(num_classes=10):
    net = GluonTiny(num_classes)
    net.initialize(mx.init.Xavier())
    return net


def tiny_spec(name):
    return ModelSpec(name, "tiny", "pytorch", 32, (0.5,) * 3, (0.25,) * 3, 10, "output")


@pytest.fixture(autouse=True, scope="module")
def tiny_models():
    """Register 'tiny_cifar' (input 32) in every framework, with its spec, for the duration
    of this module."""
    registered = []
    SPECS["tiny_cifar"] = tiny_spec("tiny_cifar")
    for impl, ctor in ((pytorch_impl, TorchTiny), (gluon_impl, _gluon_tiny), (paddle_impl, PaddleTiny)):
        impl.list_models()
        impl._registry._constructors["tiny_cifar"] = ctor
        registered.append(impl)
    yield
    for impl in registered:
        impl._registry._constructors.pop("tiny_cifar")
    SPECS.pop("tiny_cifar")


@pytest.fixture
def torch_file(tmp_path):
    torch.manual_seed(0)
    net = TorchTiny(7)
    net.features[1].running_mean.normal_()
    net.features[1].running_var.uniform_(0.5, 2)
    path = tmp_path / "tiny.pth"
    torch.save(net.state_dict(), path)
    return path, {k: v.numpy() for k, v in net.state_dict().items()}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def check_numbers(out):
    """(max |logit difference|, max |logit|) as ``--check`` prints them."""
    match = re.search(r"max \|logit difference\| (\S+) \(max \|logit\| ([^)]+)\)", out)
    assert match, out
    return float(match[1]), float(match[2])


def test_every_direction_round_trips_bit_exact(tmp_path, torch_file, capsys):
    path, original = torch_file
    chain = [path, tmp_path / "a.params", tmp_path / "b.pdparams", tmp_path / "c.safetensors",
             tmp_path / "d.params", tmp_path / "e.pth", tmp_path / "f.pdparams", tmp_path / "g.pth"]
    for src, dst in zip(chain, chain[1:]):
        code, out, err = _run(capsys, src, dst, "--check")
        assert code == 0, err
        assert "model tiny_cifar" in out and '"num_classes": 7' in out
        diff, scale = check_numbers(out)
        assert diff <= 1e-5 * scale + 1e-6, out
    back = torch.load(chain[-1], weights_only=True)
    assert back.keys() == original.keys()
    assert all(np.array_equal(back[k].numpy(), v) for k, v in original.items())
    gluon_state = load_gluon_params(chain[1])
    assert "features.1.gamma" in gluon_state and np.array_equal(
        gluon_state["features.1.gamma"], original["features.1.weight"])
    paddle_state = load_pdparams(chain[2])
    assert paddle_state["output.weight"].shape == (4, 7)
    assert np.array_equal(paddle_state["features.1._variance"], original["features.1.running_var"])


def test_converted_weights_give_the_same_logits_in_each_framework(tmp_path, torch_file, capsys):
    path, _ = torch_file
    assert _run(capsys, path, tmp_path / "t.params")[0] == 0
    assert _run(capsys, path, tmp_path / "t.pdparams")[0] == 0
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8))
    net = TorchTiny(7).double()
    net.load_state_dict(torch.load(path, weights_only=True))
    expected = net.eval()(torch.from_numpy(x)).detach().numpy()
    gnet = GluonTiny(7)
    gnet.load_parameters(str(tmp_path / "t.params"))
    gnet.cast("float64")
    assert_close(gnet(mx.nd.array(x, dtype="float64")).asnumpy(), expected, np.float64, "gluon logits")
    paddle.set_default_dtype("float64")
    try:
        pnet = PaddleTiny(7)
        pnet.set_state_dict({k: np.asarray(v, np.float64) for k, v in load_pdparams(tmp_path / "t.pdparams").items()})
        pnet.eval()
        assert_close(pnet(paddle.to_tensor(x)).numpy(), expected, np.float64, "paddle logits")
    finally:
        paddle.set_default_dtype("float32")


def test_check_fails_on_a_damaged_tensor(tmp_path, torch_file, capsys, monkeypatch):
    """A conversion that writes one wrong value: ``--check`` prints both numbers and exits 3
    at the default (float32 parity) tolerance, and passes at a tolerance loose enough."""
    path, original = torch_file

    def damaging(write):
        def write_state(state, *args):
            state = dict(state, **{"output.bias": state["output.bias"] + 1e-3})
            return write(state, *args)
        return write_state

    monkeypatch.setattr(convert_cli, "write_state", damaging(convert_cli.write_state))
    code, out, err = _run(capsys, path, tmp_path / "d.params", "--check")
    assert code == 3, (out, err)
    diff, scale = check_numbers(out)
    assert 0.9e-3 <= diff <= 1.1e-3 and scale > 0, out  # the damage, and nothing else
    assert "DISAGREE" in out
    code, out, _ = _run(capsys, path, tmp_path / "e.params", "--check", "0.5")
    assert code == 0 and "agree" in out and "rtol 0.5" in out


def test_training_checkpoint_and_dataparallel_names(tmp_path, torch_file, capsys):
    _, original = torch_file
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in original.items()},
               "optimizer": {"lr": 0.1}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    code, out, err = _run(capsys, tmp_path / "ckpt.pth", tmp_path / "w.params", "--model", "tiny_cifar")
    assert code == 0, err
    assert np.array_equal(load_gluon_params(tmp_path / "w.params")["output.weight"], original["output.weight"])


def test_gluon_export_files(tmp_path, capsys):
    net = _gluon_tiny(5)
    net.hybridize()
    net(mx.nd.ones((1, 3, 8, 8)))
    net.export(str(tmp_path / "tiny"))
    exported = tmp_path / "tiny-0000.params"
    assert any(k.startswith("aux:") for k in load_gluon_params(exported))
    code, out, err = _run(capsys, exported, tmp_path / "t.pth")
    assert code == 0, err
    state = torch.load(tmp_path / "t.pth", weights_only=True)
    assert np.array_equal(state["features.1.running_var"].numpy(), net.features[1].running_var.data().asnumpy())
    assert np.array_equal(state["output.weight"].numpy(), net.output.weight.data().asnumpy())


def test_identification_lists_candidates_when_ambiguous(tmp_path, torch_file, capsys):
    path, _ = torch_file
    pytorch_impl._registry._constructors["tiny_twin"] = TorchTiny
    SPECS["tiny_twin"] = tiny_spec("tiny_twin")
    try:
        code, _, err = _run(capsys, path, tmp_path / "x.params")
    finally:
        pytorch_impl._registry._constructors.pop("tiny_twin")
        SPECS.pop("tiny_twin")
    assert code == 1 and "fit several models; pass --model: tiny_cifar, tiny_twin" in err
    assert not (tmp_path / "x.params").exists()


def test_wrong_model_lists_names_and_writes_nothing(tmp_path, torch_file, capsys):
    _, original = torch_file
    state = {k: torch.from_numpy(v) for k, v in original.items() if k != "features.0.bias"}
    state["extra.weight"] = torch.zeros(2)
    state["features.0.weight"] = torch.zeros(4, 3, 5, 5)
    torch.save(state, tmp_path / "bad.pth")
    code, out, err = _run(capsys, tmp_path / "bad.pth", tmp_path / "x.pdparams", "--model", "tiny_cifar")
    assert code == 1 and err.startswith("error: the checkpoint")
    assert "missing (1): features.0.bias" in err and "unexpected (1): extra.weight" in err
    assert "features.0.weight: checkpoint" in err and "(4, 3, 5, 5) vs model (4, 3, 3, 3)" in err
    assert not (tmp_path / "x.pdparams").exists()
    code, _, err = _run(capsys, tmp_path / "bad.pth", tmp_path / "x.pdparams")
    assert code == 1 and "match no registered model" in err


def test_existing_destination_needs_force(tmp_path, torch_file, capsys):
    path, _ = torch_file
    dst = tmp_path / "out.params"
    dst.write_bytes(b"keep me")
    code, _, err = _run(capsys, path, dst)
    assert code == 1 and "exists; pass --force" in err and dst.read_bytes() == b"keep me"
    assert _run(capsys, path, dst, "--force")[0] == 0 and dst.read_bytes() != b"keep me"
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


@pytest.mark.parametrize("suffix", [".pth", ".pdparams"])
def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, capsys, suffix):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    src = tmp_path / f"evil{suffix}"
    if suffix == ".pth":
        torch.save({"w": Evil()}, src)
    else:
        src.write_bytes(pickle.dumps({"w": Evil()}, protocol=4))
    code, _, err = _run(capsys, src, tmp_path / "out.params", "--model", "tiny_cifar")
    assert code == 1 and "refus" in err and str(src) in err
    assert not marker.exists() and not (tmp_path / "out.params").exists()


@pytest.mark.parametrize("suffix", [".pth", ".pdparams", ".params", ".safetensors"])
def test_bad_files_give_one_clear_line(tmp_path, torch_file, capsys, suffix):
    path, _ = torch_file
    good = tmp_path / f"good{suffix}"
    assert _run(capsys, path, good)[0] == 0
    blob = good.read_bytes()
    for name, content in (("truncated", blob[: len(blob) // 2]), ("empty", b""),
                          ("wrong", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)):
        src = tmp_path / f"{name}{suffix}"
        src.write_bytes(content)
        code, out, err = _run(capsys, src, tmp_path / "out.safetensors")
        assert code == 1 and err.startswith(f"error: {src}") and err.count("\n") == 1, err
        assert "Traceback" not in err and not (tmp_path / "out.safetensors").exists()


def test_unknown_extension_and_model(tmp_path, torch_file, capsys):
    path, _ = torch_file
    code, _, err = _run(capsys, path, tmp_path / "out.onnx")
    assert code == 1 and "cannot tell the framework from the extension .onnx" in err
    code, _, err = _run(capsys, path, tmp_path / "out.params", "--model", "resnet50")
    assert code == 1 and "unknown model 'resnet50'" in err


def test_a_gluon_file_from_another_source(tmp_path, capsys):
    save_gluon_params({"features.0.weight": np.zeros((4, 3, 3, 3), np.float32)}, tmp_path / "part.params")
    code, _, err = _run(capsys, tmp_path / "part.params", tmp_path / "x.pth", "--model", "tiny_cifar")
    assert code == 1 and "missing (" in err and "features.1.running_var" in err
