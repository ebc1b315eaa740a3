"""gluon_impl.train_san on common/fit: a smoke run of a reduced SAN on the embedded digits
(the run folder, its logged validation recomputed from its checkpoint) and exact resume,
in this process (as tests/test_train_san.py runs the PyTorch script)."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from common.checkpoint import load_gluon_params
from common.labels import one_hot
from common.processes import Processes
from common.san_recipe import build_loaders, parse_args
from gluon_impl import create_model, train_san
from gluon_impl.weights import load_weights

# a reduced SAN10 (one block per stage, kernels 3 3 3 3 1 at 32x32), one batch of 2 per epoch
SMALL = ["--layers", "1", "1", "1", "1", "1", "--batch-size", "2", "--max-batches", "1",
         "--workers", "0"]


def metrics(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gluon-san") / "straight"
    train_san.main([*SMALL, "--epochs", "2", "--log-dir", str(run_dir)])
    return run_dir


def test_digits_run_writes_the_run_folder(straight_run):
    rows = metrics(straight_run)
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "train_top5", "val_top5"):
            assert np.isfinite(r[key]), key
        assert 0 <= r["train_acc"] <= r["train_top5"] <= 1
    assert rows[1]["lr"] == pytest.approx(0.1 * (1 + np.cos(np.pi / 2)) / 2)  # cosine, 2 epochs
    assert {"model-last.params", "model-best.params", "train-state.params", "train-state.json",
            "train.log", "model.json", "learning-curves.png", "args.yaml"} <= set(os.listdir(straight_run))
    card = json.loads((straight_run / "model.json").read_text())
    assert card["framework"] == "gluon" and card["kwargs"]["kernels"] == [3, 3, 3, 3, 1]
    # the last epoch's validation is that of the saved weights
    args = parse_args("", SMALL)
    test_loader = build_loaders(args, Processes())[3]
    model = load_weights(create_model("san10_pairwise", **card["kwargs"]),
                         load_gluon_params(straight_run / "model-last.params"))
    loss, top1, n = 0.0, 0, 0
    for _, (images, labels) in zip(range(args.max_batches), test_loader.epoch(0)):
        logits = model(mx.nd.array(images))
        loss += train_san.soft_cross_entropy(logits, mx.nd.array(one_hot(labels, 10))).asscalar() * len(labels)
        top1 += int((logits.argmax(1).asnumpy() == labels).sum())
        n += len(labels)
    assert rows[1]["val_loss"] == pytest.approx(loss / n, rel=1e-5)
    assert rows[1]["val_acc"] == pytest.approx(top1 / n)


def test_resume_continues_exactly(straight_run, tmp_path):
    run_dir = tmp_path / "resumed"
    train_san.main([*SMALL, "--epochs", "2", "--stop-after", "1", "--log-dir", str(run_dir)])
    train_san.main([*SMALL, "--epochs", "2", "--log-dir", str(run_dir), "--resume"])
    assert "resumed after epoch 0" in (run_dir / "train.log").read_text()
    expected = load_gluon_params(straight_run / "model-last.params")
    actual = load_gluon_params(run_dir / "model-last.params")
    assert set(expected) == set(actual) and len(expected) > 100
    for k in expected:
        assert np.array_equal(expected[k], actual[k]), k
    for key in ("train_loss", "val_loss", "val_top5"):
        assert [r[key] for r in metrics(run_dir)] == [r[key] for r in metrics(straight_run)], key
