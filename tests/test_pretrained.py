"""One call to a usable model in every framework: ``create_model(name, pretrained=PATH)`` reads a
checkpoint of any format written by any framework, ``num_classes=N`` keeps every tensor but
the classifier's, and ``load_model(PATH)`` finds the model from the model card beside the
checkpoint or from the tensors alone."""
import importlib
import json

import numpy as np
import pytest
import torch

from common.checkpoint import CheckpointError
from common.convert import ConversionError
from common.formats import EXTENSION
from common.specs import MODEL_CARD, model_card, write_model_card
from parity_tests.tolerances import assert_close
from scripts.convert import convert

FRAMEWORKS = ("pytorch", "gluon", "paddle")
FORMATS = tuple(EXTENSION.values())


def impl(framework):
    return importlib.import_module(f"{framework}_impl")


def predict(framework, net, images):
    return importlib.import_module(f"{framework}_impl.weights").predict(net, images)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A UPANets16 with random weights and running statistics, in every format; its logits."""
    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    net = impl("pytorch").create_model("upanets16")
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if name.endswith("running_var"):
                value.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", "bias")):
                value.normal_(0, 0.1)
    torch.save(net.state_dict(), folder / "w.pth")
    for suffix in set(FORMATS) - {".pth"}:
        convert(folder / "w.pth", folder / f"w{suffix}", "upanets16")
    images = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(images)).numpy()
    return folder, images, expected


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("suffix", FORMATS)
def test_any_checkpoint_in_any_framework(framework, suffix, checkpoints):
    folder, images, expected = checkpoints
    net = impl(framework).create_model("upanets16", pretrained=str(folder / f"w{suffix}"))
    assert_close(predict(framework, net, images), expected, np.float32, f"{framework} from {suffix}")


def _torch_state(net):
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_other_number_of_classes_keeps_all_but_the_classifier(framework, checkpoints, tmp_path):
    folder, images, _ = checkpoints
    net = impl(framework).create_model("upanets16", pretrained=str(folder / "w.pdparams"), num_classes=4)
    assert predict(framework, net, images).shape == (2, 4)
    # back in PyTorch's names: everything but the classifier is the checkpoint's
    saved = tmp_path / f"n{EXTENSION[framework]}"
    if framework == "pytorch":
        torch.save(net.state_dict(), saved)
    elif framework == "gluon":
        net.save_parameters(str(saved))
    else:
        import paddle
        paddle.save(net.state_dict(), str(saved))
    convert(saved, tmp_path / "n2.pth", "upanets16", kwargs={"num_classes": 4})
    got = {k: v.numpy() for k, v in torch.load(tmp_path / "n2.pth", weights_only=True).items()}
    original = {k: v.numpy() for k, v in torch.load(folder / "w.pth", weights_only=True).items()}
    assert got.keys() == original.keys()
    for key, value in original.items():
        if key.startswith("linear."):
            assert got[key].shape[0] == 4, key
        else:
            assert np.array_equal(got[key], value), key


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_load_model_identifies_the_tensors(framework, checkpoints):
    folder, images, expected = checkpoints
    net = impl(framework).load_model(str(folder / "w.safetensors"))
    assert_close(predict(framework, net, images), expected, np.float32, f"{framework} load_model")


def test_load_model_follows_the_model_card(checkpoints, tmp_path):
    folder, images, expected = checkpoints
    checkpoint = tmp_path / "model-best.pth"
    checkpoint.write_bytes((folder / "w.pth").read_bytes())
    write_model_card(tmp_path, model_card("upanets16", "pytorch", {"num_classes": 10},
                                          classes=list("abcdefghij"), recipe="test"))
    card = json.loads((tmp_path / MODEL_CARD).read_text())
    assert card["model"] == "upanets16" and card["input_size"] == 32 and len(card["classes"]) == 10
    net = impl("gluon").load_model(str(checkpoint))
    assert_close(predict("gluon", net, images), expected, np.float32, "gluon from the card")
    # the card's arguments rule: a card that says 3 classes gets a 3-class classifier
    write_model_card(tmp_path, model_card("upanets16", "pytorch", {"num_classes": 3}))
    assert predict("paddle", impl("paddle").load_model(str(checkpoint)), images).shape == (2, 3)


def test_bad_checkpoints_are_one_clear_error(checkpoints, tmp_path):
    folder, _, _ = checkpoints
    with pytest.raises(CheckpointError, match="no such file"):
        impl("pytorch").create_model("upanets16", pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ConversionError, match=r"does not match the model:\n  shape mismatch \(371\): bn.bias"):
        impl("gluon").create_model("upanets32", pretrained=str(folder / "w.pth"))
    (tmp_path / MODEL_CARD).write_text("{not json")
    (tmp_path / "w.pth").write_bytes((folder / "w.pth").read_bytes())
    with pytest.raises(CheckpointError, match="not a readable model card"):
        impl("pytorch").load_model(str(tmp_path / "w.pth"))
