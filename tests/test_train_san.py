"""pytorch_impl.train_san: smoke run on the embedded digits, exact resume, two-process CPU
DistributedDataParallel (gloo under torchrun) on a tiny image-folder dataset, clear errors.
Runs are subprocesses with a reduced SAN (one block per stage) and a few small batches."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pytorch_impl import create_model

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--layers", "1", "1", "1", "1", "1", "--batch-size", "4", "--max-batches", "2",
         "--workers", "0"]


def train(*args, module="pytorch_impl.train_san", launcher=(), check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([*launcher] + ([] if launcher else [sys.executable, "-m"]) + [module, *args],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def metrics(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def weights(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("san") / "straight"
    train(*SMALL, "--epochs", "2", "--log-dir", str(run_dir))
    return run_dir


def test_digits_run_writes_the_run_folder(straight_run):
    rows = metrics(straight_run)
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "train_top5", "val_top5",
                    "samples_per_s"):
            assert np.isfinite(r[key]), key
        assert 0 <= r["val_acc"] <= r["val_top5"] <= 1
    assert rows[1]["lr"] == pytest.approx(0.1 * (1 + np.cos(np.pi / 2)) / 2)  # cosine, 2 epochs
    files = set(os.listdir(straight_run))
    assert {"model-last.pth", "model-best.pth", "train-state.pth", "train.log"} <= files
    model = create_model("san10_pairwise", num_classes=10, layers=(1,) * 5, kernels=(3, 3, 3, 3, 1))
    model.load_state_dict(weights(straight_run / "model-last.pth"), strict=True)


def test_resume_continues_exactly(straight_run, tmp_path):
    run_dir = tmp_path / "resumed"
    train(*SMALL, "--epochs", "1", "--log-dir", str(run_dir))
    train(*SMALL, "--epochs", "2", "--log-dir", str(run_dir), "--resume")
    expected, actual = weights(straight_run / "model-last.pth"), weights(run_dir / "model-last.pth")
    assert set(expected) == set(actual)
    for k in expected:
        assert torch.equal(expected[k], actual[k]), k
    assert [r["train_loss"] for r in metrics(run_dir)] == [r["train_loss"] for r in metrics(straight_run)]


def _image_folder(root, per_class):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 3)):
        for c in ("ant", "bee"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")


def test_two_process_cpu_ddp_on_an_image_folder(tmp_path):
    data = tmp_path / "data"
    _image_folder(data, per_class=4)
    run_dir = tmp_path / "ddp"
    result = train("--dataset", "imagenet", "--data-dir", str(data), "--image-size", "32",
                   "--layers", "1", "1", "1", "1", "1", "--batch-size", "4", "--epochs", "1",
                   "--workers", "0", "--log-dir", str(run_dir),
                   launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", "-m"))
    assert "2 process(es) on cpu" in result.stdout
    (row,) = metrics(run_dir)
    # 6 validation images in two processes, each counted once: accuracy in sixths
    assert row["val_acc"] * 6 == pytest.approx(round(row["val_acc"] * 6))
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    model = create_model("san10_pairwise", num_classes=2, layers=(1,) * 5, kernels=(3, 3, 3, 3, 1))
    model.load_state_dict(weights(run_dir / "model-last.pth"), strict=True)


def test_bad_input_gives_a_clear_error(tmp_path):
    result = train("--dataset", "imagenet", "--data-dir", str(tmp_path), "--image-size", "64",
                   check=False)
    assert result.returncode == 2
    assert "do not fit 64x64 images" in result.stderr
    result = train("--resume", "--log-dir", str(tmp_path / "none"), *SMALL, check=False)
    assert result.returncode != 0 and "nothing to resume" in result.stderr


def test_paddle_run_and_exact_resume(tmp_path):
    """paddle_impl.train_san: the run folder, and 1 epoch + --resume = 2 epochs at once."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    module = "paddle_impl.train_san"
    train(*SMALL, "--epochs", "2", "--log-dir", str(straight), module=module)
    train(*SMALL, "--epochs", "1", "--log-dir", str(resumed), module=module)
    train(*SMALL, "--epochs", "2", "--log-dir", str(resumed), "--resume", module=module)
    from common.checkpoint import load_pdparams
    expected = load_pdparams(straight / "model-last.pdparams")
    actual = load_pdparams(resumed / "model-last.pdparams")
    assert set(expected) == set(actual) and len(expected) > 100
    for k in expected:
        assert np.array_equal(expected[k], actual[k]), k
    rows = metrics(resumed)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in metrics(straight)]
    assert {"model-best.pdparams", "train-state.pdopt"} <= set(os.listdir(resumed))
