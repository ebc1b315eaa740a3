"""The predict command on real images: a UPANets16 trained here on CIFAR-10 images, its
checkpoint in the three frameworks' formats with a model card, and real CIFAR-10 test images
written as PNG files. Every framework prints the same top-k classes with the same
probabilities (float32 tolerance), equal to those of the model applied by hand; bad input
is one line and the other images are still reported."""
import csv
import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from common.data import CIFAR_MEAN, CIFAR_STD, get_dataset
from common.loader import BatchLoader
from common.specs import model_card, write_model_card
from common.transforms import cifar_train
from parity_tests.tolerances import assert_close
from pytorch_impl import create_model
from scripts.convert import convert
from scripts.predict import main

IMAGES = 12


@pytest.fixture(scope="module")
def trained(cifar10_mini, tmp_path_factory):
    """(folder of checkpoints, folder of PNG test images, their uint8 pixels, expected
    probabilities): UPANets16 after 8 SGD steps on CIFAR-10 batches of 32."""
    folder = tmp_path_factory.mktemp("predict")
    train = get_dataset("cifar10", "train", cifar10_mini)
    torch.manual_seed(0)
    net = create_model("upanets16", num_classes=10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loader = BatchLoader(train, 32, cifar_train(CIFAR_MEAN, CIFAR_STD), shuffle=True)
    net.train()
    for step, (images, labels) in enumerate(loader.epoch(0)):
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(images)), torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 7:
            break
    torch.save(net.state_dict(), folder / "model.pth")
    write_model_card(folder, model_card("upanets16", "pytorch", {"num_classes": 10},
                                        CIFAR_MEAN, CIFAR_STD, train.classes, "test_predict"))
    for suffix in (".params", ".pdparams"):
        convert(folder / "model.pth", folder / f"model{suffix}", "upanets16")
    test = get_dataset("cifar10", "test", cifar10_mini)
    pixels = np.stack([test.images[i] for i in range(IMAGES)])
    images_dir = folder / "images"
    images_dir.mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(images_dir / f"{i:02d}.png")
    x = (pixels.astype(np.float32) / 255 - np.float32(CIFAR_MEAN)) / np.float32(CIFAR_STD)
    with torch.no_grad():
        logits = net.eval()(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    probabilities = torch.softmax(logits.double(), 1)
    return folder, images_dir, train.classes, probabilities.numpy()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("framework", ["pytorch", "gluon", "paddle"])
@pytest.mark.parametrize("suffix", [".pth", ".params"])
def test_every_framework_gives_the_same_top_k(framework, suffix, trained, capsys):
    folder, images_dir, classes, expected = trained
    code, out, err = run(capsys, folder / f"model{suffix}", images_dir, "--framework", framework,
                         "-k", 3, "-b", 5, "--json", "-")
    assert code == 0, err
    rows = json.loads(out)
    assert [os.path.basename(r["image"]) for r in rows] == [f"{i:02d}.png" for i in range(IMAGES)]
    top = np.array([[t["index"] for t in r["top"]] for r in rows])
    assert np.array_equal(top, np.argsort(-expected, axis=1, kind="stable")[:, :3])
    assert all(t["class"] == classes[t["index"]] for r in rows for t in r["top"])
    got = np.array([[t["probability"] for t in r["top"]] for r in rows])
    assert_close(got, np.take_along_axis(expected, top, 1), np.float32, f"{framework} probabilities")


def test_table_csv_and_class_file(trained, capsys, tmp_path):
    folder, images_dir, _, expected = trained
    names = tmp_path / "names.txt"
    names.write_text("".join(f"class-{c}\n" for c in range(10)))
    code, out, err = run(capsys, folder / "model.pdparams", images_dir / "0*.png", "--classes", names,
                         "--csv", tmp_path / "out.csv", "-k", 2)
    assert code == 0, err
    assert out.splitlines()[0].startswith("image") and len(out.splitlines()) == 1 + 10  # 00-09
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert len(rows) == 20 and rows[0]["class"] == f"class-{int(rows[0]['index'])}"
    assert int(rows[0]["index"]) == int(expected[0].argmax())


def test_bad_inputs_are_one_line_each(trained, capsys, tmp_path):
    folder, images_dir, _, _ = trained
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    good = images_dir / "03.png"
    code, out, err = run(capsys, folder / "model.pth", broken, good, tmp_path / "nothing*.png", "--json", "-")
    assert code == 1
    assert err.count("\n") == 2 and "broken.jpg: cannot decode image" in err and "nothing*.png: no such" in err
    assert [r["image"] for r in json.loads(out)] == [str(good)]
    code, out, err = run(capsys, folder / "model.pth", good, "--classes", tmp_path / "missing.txt")
    assert code == 2 and err.count("\n") == 1 and "missing.txt" in err and "Traceback" not in err
    (tmp_path / "few.txt").write_text("a\nb\n")
    code, _, err = run(capsys, folder / "model.pth", good, "--classes", tmp_path / "few.txt")
    assert code == 2 and "2 names for a model of 10 classes" in err
    (tmp_path / "junk.pth").write_bytes(b"junk")
    code, _, err = run(capsys, tmp_path / "junk.pth", good)
    assert code == 2 and err.startswith(f"error: {tmp_path / 'junk.pth'}") and err.count("\n") == 1
