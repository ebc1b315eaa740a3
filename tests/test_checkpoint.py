"""Checkpoint formats read and written without the frameworks, checked against the
frameworks' own save/load; safe unpickling; the naming rules of the conversion layer."""
import os
import pickle

import mxnet as mx
import numpy as np
import paddle
import pytest
import torch

from common import checkpoint as ckpt
from common.checkpoint import CheckpointError
from common.convert import ConversionError, ConversionReport, from_canonical, match_state, to_canonical
from pytorch_impl.weights import load_pth

DTYPES = (np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8)


def _state(rng):
    return {f"features.{i}.weight": (rng.normal(size=(3, 2, 1 + i)) * 10).astype(dt)
            for i, dt in enumerate(DTYPES)}


def test_gluon_params_written_and_read_like_mxnet(tmp_path):
    state = _state(np.random.default_rng(0))
    ckpt.save_gluon_params(state, tmp_path / "ours.params")
    loaded = mx.nd.load(str(tmp_path / "ours.params"))
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert loaded[k].dtype == v.dtype and np.array_equal(loaded[k].asnumpy(), v)
    mx.nd.save(str(tmp_path / "theirs.params"), {k: mx.nd.array(v, dtype=v.dtype) for k, v in state.items()})
    for k, v in ckpt.load_gluon_params(tmp_path / "theirs.params").items():
        assert v.dtype == state[k].dtype and np.array_equal(v, state[k])


def test_gluon_save_parameters_file(tmp_path):
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3, in_channels=3), mx.gluon.nn.BatchNorm(in_channels=4),
            mx.gluon.nn.Dense(5, in_units=16))
    net.initialize()
    net.save_parameters(str(tmp_path / "net.params"))
    state = ckpt.load_gluon_params(tmp_path / "net.params")
    assert sorted(state) == sorted(["0.weight", "0.bias", "1.gamma", "1.beta", "1.running_mean",
                                    "1.running_var", "2.weight", "2.bias"])
    assert np.array_equal(state["2.weight"], net[2].weight.data().asnumpy())


def test_pdparams_written_and_read_like_paddle(tmp_path):
    layer = paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.BatchNorm1D(4))
    paddle.save(layer.state_dict(), str(tmp_path / "theirs.pdparams"))
    state = ckpt.load_pdparams(tmp_path / "theirs.pdparams")
    assert sorted(state) == ["0.bias", "0.weight", "1._mean", "1._variance", "1.bias", "1.weight"]
    assert np.array_equal(state["0.weight"], layer[0].weight.numpy())
    state["0.weight"] = state["0.weight"] * 2
    ckpt.save_pdparams(state, tmp_path / "ours.pdparams")
    loaded = paddle.load(str(tmp_path / "ours.pdparams"))
    assert np.array_equal(np.asarray(loaded["0.weight"]), state["0.weight"])
    layer.set_state_dict(loaded)
    assert np.array_equal(layer[0].weight.numpy(), state["0.weight"])


def test_safetensors_round_trip(tmp_path):
    state = _state(np.random.default_rng(1))
    ckpt.save_safetensors(state, tmp_path / "w.safetensors")
    loaded = ckpt.load_safetensors(tmp_path / "w.safetensors")
    assert all(np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in state.items())


def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pdparams").write_bytes(pickle.dumps({"w": Evil()}, protocol=4))
    with pytest.raises(CheckpointError, match="refusing to load posix.system"):
        ckpt.load_pdparams(tmp_path / "evil.pdparams")
    assert not marker.exists()
    pickle.loads((tmp_path / "evil.pdparams").read_bytes())  # the file really is malicious
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_code_running_pth_is_refused_by_name_and_does_not_run(tmp_path, zip_format):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError) as refused:
        load_pth(path)
    message = str(refused.value)
    assert f"{path}: refused: it would run {os.system.__module__}.system" in message
    assert "weights_only" not in message and "\n" not in message
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the file really runs its payload
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_pth_refusals_pass_on_nothing_else_of_torch(tmp_path):
    # torch's other wording ("Unsupported global: GLOBAL numpy...") for a checkpoint of numpy
    # arrays; a pickle protocol 4 stops torch at its first opcode, before any global
    torch.save({"w": np.ones(2)}, tmp_path / "numpy.pth")
    with pytest.raises(CheckpointError, match=r"refused: it would run numpy\.\w+\.multiarray\._reconstruct \("):
        load_pth(tmp_path / "numpy.pth")
    (tmp_path / "p4.pth").write_bytes(pickle.dumps({"w": os.getcwd}, protocol=4))
    with pytest.raises(CheckpointError) as refused:
        load_pth(tmp_path / "p4.pth")
    assert str(refused.value) == f"{tmp_path / 'p4.pth'}: refused: it is not a tensors-only pickle (nothing was run)"


@pytest.mark.parametrize("loader, saver, suffix", [
    (ckpt.load_gluon_params, ckpt.save_gluon_params, ".params"),
    (ckpt.load_pdparams, ckpt.save_pdparams, ".pdparams"),
    (ckpt.load_safetensors, ckpt.save_safetensors, ".safetensors"),
])
def test_bad_files_give_one_clear_error(tmp_path, loader, saver, suffix):
    good = tmp_path / f"good{suffix}"
    saver({"a.weight": np.ones((64, 64), np.float32)}, good)
    blob = good.read_bytes()
    cases = {"truncated": blob[: len(blob) // 2], "empty": b"", "wrong": b"PK\x03\x04 not this format" * 10}
    for name, content in cases.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=str(path)):
            loader(path)
    with pytest.raises(CheckpointError, match="no such file"):
        loader(tmp_path / f"missing{suffix}")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "w.params"
    ckpt.save_gluon_params({"a": np.zeros(3, np.float32)}, target)
    before = target.read_bytes()
    with pytest.raises(CheckpointError):
        ckpt.save_gluon_params({"a": np.zeros(3, np.float32), "b": np.zeros(2, np.complex64)}, target)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["w.params"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with ckpt.atomic_open(tmp_path / "a.bin") as f:
            f.write(b"x")
        with ckpt.atomic_path(tmp_path / "b.bin") as tmp:
            open(tmp, "wb").close()
    finally:
        os.umask(umask)
    for name in ("a.bin", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_naming_rules_round_trip_bit_exact():
    rng = np.random.default_rng(0)
    canonical = {"stem.0.weight": rng.normal(size=(4, 3, 3, 3)), "stem.1.weight": rng.normal(size=4),
                 "stem.1.bias": rng.normal(size=4), "stem.1.running_mean": rng.normal(size=4),
                 "stem.1.running_var": rng.random(4), "fc.weight": rng.normal(size=(5, 4)),
                 "fc.bias": rng.normal(size=5)}
    gluon_model = {"stem.0.weight": (4, 3, 3, 3), "stem.1.gamma": (4,), "stem.1.beta": (4,),
                   "stem.1.running_mean": (4,), "stem.1.running_var": (4,), "fc.weight": (5, 4),
                   "fc.bias": (5,)}
    paddle_model = {"stem.0.weight": (4, 3, 3, 3), "stem.1.weight": (4,), "stem.1.bias": (4,),
                    "stem.1._mean": (4,), "stem.1._variance": (4,), "fc.weight": (4, 5), "fc.bias": (5,)}
    gluon = from_canonical(canonical, "gluon", gluon_model)
    assert gluon.keys() == gluon_model.keys()
    report = ConversionReport()
    paddle_state = from_canonical(canonical, "paddle", paddle_model, report)
    assert paddle_state.keys() == paddle_model.keys() and paddle_state["fc.weight"].shape == (4, 5)
    assert np.array_equal(paddle_state["fc.weight"], canonical["fc.weight"].T)
    assert report.transposed == ["fc.weight"]
    assert ("stem.1.running_var", "stem.1._variance") in report.renamed
    for fw, state in (("gluon", gluon), ("paddle", paddle_state)):
        match_state(state, gluon_model if fw == "gluon" else paddle_model)
        back = to_canonical(state, fw)
        assert back.keys() == canonical.keys()
        assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in canonical.items())
    report = ConversionReport()
    torch_state = dict(canonical, **{"stem.1.num_batches_tracked": np.array(7)})
    assert to_canonical(torch_state, "pytorch", report).keys() == canonical.keys()
    assert report.dropped == ["stem.1.num_batches_tracked"]


def test_match_state_lists_every_problem():
    shapes = {"a": (2, 3), "b": (4,), "c": (1,)}
    source = {"a": np.zeros((3, 2)), "b": np.zeros(4), "d": np.zeros(1)}
    with pytest.raises(ConversionError) as e:
        match_state(source, shapes)
    message = str(e.value)
    assert "missing (1): c" in message and "unexpected (1): d" in message
    assert "a: checkpoint (3, 2) vs model (2, 3)" in message
    match_state({"a": np.zeros((2, 3)), "b": np.zeros(4), "c": np.zeros(1)}, shapes)


def test_common_imports_no_framework():
    import subprocess
    import sys
    code = ("import sys, pkgutil, importlib, common\n"
            "for m in pkgutil.iter_modules(common.__path__): importlib.import_module('common.' + m.name)\n"
            "import common.data as d; d.get_dataset('digits', 'test')\n"
            "bad = [m for m in ('torch', 'mxnet', 'paddle', 'tensorflow') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
