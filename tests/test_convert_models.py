"""The conversion layer on every registered model: the naming rules carry every tensor of
every model to every framework it exists in and back (names and shapes, each model), and the
CLI moves real weights of one model per family through every format, bit for bit, with
the same logits in both frameworks."""
import importlib

import numpy as np
import pytest
import torch

from common.checkpoint import load_safetensors
from common.convert import from_canonical, match_state, to_canonical
from scripts.convert import main, shapes
from tests.test_convert_cli import check_numbers

FRAMEWORKS = ("pytorch", "gluon", "paddle")


def _registry(framework):
    return importlib.import_module(f"{framework}_impl").list_models()


def _models():
    return [(name, fw) for name in _registry("pytorch") for fw in ("gluon", "paddle")
            if name in _registry(fw)]


def test_every_model_is_in_every_framework():
    """The full matrix: the three registries hold the same 23 names (4 families)."""
    everywhere = set(_registry("pytorch"))
    assert len(everywhere) == 23
    for fw in ("gluon", "paddle"):
        assert set(_registry(fw)) == everywhere, f"{fw} lacks {sorted(everywhere - set(_registry(fw)))}"


@pytest.mark.parametrize("name, framework", _models())
def test_rules_cover_every_tensor(name, framework):
    canonical_shapes = shapes("pytorch", name, {})
    # np.zeros pages are not touched until written: shapes of the largest models cost no memory
    canonical = {k: np.zeros(s, np.float32) for k, s in canonical_shapes.items()}
    target = shapes(framework, name, {})
    native = from_canonical(canonical, framework, target)
    match_state(native, target)
    back = to_canonical(native, framework)
    assert {k: v.shape for k, v in back.items()} == canonical_shapes


FAMILY_REPRESENTATIVES = ("attention56_cifar", "alexnet_simam", "upanets16", "san10_pairwise")


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_cli_every_direction_bit_exact(name, tmp_path, capsys):
    torch.manual_seed(0)
    net = importlib.import_module("pytorch_impl").create_model(name)
    with torch.no_grad():  # non-trivial running statistics
        for key, value in net.state_dict().items():
            if key.endswith("running_mean"):
                value.normal_()
            elif key.endswith("running_var"):
                value.uniform_(0.5, 2.0)
    original = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    src = tmp_path / "src.pth"
    torch.save(net.state_dict(), src)
    formats = [".params" if name in _registry("gluon") else None,
               ".pdparams" if name in _registry("paddle") else None, ".safetensors"]
    formats = [f for f in formats if f]
    chain = [src] + [tmp_path / f"{i}{fmt}" for i, fmt in enumerate(formats + formats[::-1])] + [tmp_path / "back.pth"]
    for a, b in zip(chain, chain[1:]):
        code, out, err = _run(capsys, a, b, "--model", name)
        assert code == 0, err
    back = torch.load(chain[-1], weights_only=True)
    assert back.keys() == original.keys()
    for k, v in original.items():
        assert back[k].dtype == torch.from_numpy(v).dtype and np.array_equal(back[k].numpy(), v), k
    assert set(load_safetensors(tmp_path / f"{len(formats) - 1}.safetensors")) == set(original)


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_cli_check_runs_both_frameworks(name, tmp_path, capsys):
    torch.manual_seed(1)
    src = tmp_path / "src.pth"
    torch.save(importlib.import_module("pytorch_impl").create_model(name).state_dict(), src)
    target = ".params" if name in _registry("gluon") else ".pdparams"
    code, out, err = _run(capsys, src, tmp_path / f"w{target}", "--check")
    assert code == 0, err
    assert f"model {name} " in out  # identified from the tensors alone
    diff, scale = check_numbers(out)
    assert diff <= 1e-5 * scale + 1e-6 * scale, out  # the float32 parity tolerance

