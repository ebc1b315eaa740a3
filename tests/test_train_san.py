"""The SAN train scripts on common/fit: a smoke run on the embedded digits whose logged
validation metrics are recomputed from its checkpoint, exact resume (PyTorch, Paddle and
two-process CPU DistributedDataParallel under torchrun on a tiny image folder), the
processes' shares of every batch, and clear errors. The runs train a reduced SAN (one block
per stage) on a few small batches; single-process PyTorch runs call the script's ``main`` in
this process, the others are subprocesses."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.loader import BatchLoader, ShardLoader
from common.processes import Processes
from common.san_recipe import build_loaders, parse_args
from parity_tests.tolerances import assert_close
from pytorch_impl import create_model
from pytorch_impl import train_san

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--layers", "1", "1", "1", "1", "1", "--batch-size", "4", "--max-batches", "2",
         "--workers", "0"]
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m")


def train(*args, module="pytorch_impl.train_san", launcher=()):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [*(launcher or (sys.executable, "-m")), module, *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def train_here(*args):
    """``python -m pytorch_impl.train_san *args`` in this process, in one thread as the
    subprocesses; torch's global random state and thread count are left as they were."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            train_san.main(list(args))
    finally:
        torch.set_num_threads(threads)


def metrics(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def weights(path):
    return torch.load(path, weights_only=True)


def assert_same_weights(expected_path, actual_path):
    expected, actual = weights(expected_path), weights(actual_path)
    assert set(expected) == set(actual) and len(expected) > 100
    for k in expected:
        assert torch.equal(expected[k], actual[k]), k


def recomputed_validation(run_dir, argv, num_classes):
    """(loss, top-1, top-5) of ``model-last.pth`` over the test batches the run evaluated,
    in this process, from the script's own flags."""
    args = parse_args("", argv)
    _, _, _, test_loader = build_loaders(args, Processes())
    model = create_model("san10_pairwise", num_classes=num_classes, layers=(1,) * 5,
                         kernels=(3, 3, 3, 3, 1))
    model.load_state_dict(weights(run_dir / "model-last.pth"), strict=True)
    model.eval()
    losses, top1, top5, count = 0.0, 0, 0, min(len(test_loader), args.max_batches or len(test_loader))
    with torch.no_grad():
        for _, (images, labels) in zip(range(count), test_loader.epoch(0)):
            logits, labels = model(torch.from_numpy(images)), torch.from_numpy(labels)
            best = logits.topk(min(5, num_classes), 1).indices == labels[:, None]
            losses += F.cross_entropy(logits, labels, reduction="sum").item()
            top1, top5 = top1 + best[:, 0].sum().item(), top5 + best.any(1).sum().item()
    n = min(len(test_loader.dataset), count * args.batch_size)
    return losses / n, top1 / n, top5 / n


def assert_validation(row, run_dir, argv, num_classes):
    loss, top1, top5 = recomputed_validation(run_dir, argv, num_classes)
    assert row["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert (row["val_acc"], row["val_top5"]) == (pytest.approx(top1), pytest.approx(top5))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("san") / "straight"
    train_here(*SMALL, "--epochs", "2", "--log-dir", str(run_dir))
    return run_dir


def test_digits_run_writes_the_run_folder(straight_run):
    rows = metrics(straight_run)
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "train_top5", "val_top5",
                    "samples_per_s"):
            assert np.isfinite(r[key]), key
        assert 0 <= r["train_acc"] <= r["train_top5"] <= 1
    assert rows[1]["lr"] == pytest.approx(0.1 * (1 + np.cos(np.pi / 2)) / 2)  # cosine, 2 epochs
    assert rows[1]["best_acc"] == max(r["val_acc"] for r in rows)
    # the last epoch's validation (8 digits) is that of the saved weights
    assert_validation(rows[1], straight_run, SMALL, num_classes=10)
    files = set(os.listdir(straight_run))
    assert {"model-last.pth", "model-best.pth", "train-state.pth", "train-state.json",
            "train.log", "learning-curves.png", "args.yaml"} <= files
    assert not any(f.startswith("model-epoch") for f in files)  # --save-period 0 by default


def test_resume_continues_exactly(straight_run, tmp_path):
    run_dir = tmp_path / "resumed"
    train_here(*SMALL, "--epochs", "2", "--stop-after", "1", "--log-dir", str(run_dir))
    train_here(*SMALL, "--epochs", "2", "--log-dir", str(run_dir), "--resume")
    assert "resumed after epoch 0" in (run_dir / "train.log").read_text()
    assert_same_weights(straight_run / "model-last.pth", run_dir / "model-last.pth")
    for key in ("train_loss", "val_loss", "val_top5"):
        assert [r[key] for r in metrics(run_dir)] == [r[key] for r in metrics(straight_run)], key


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
    """8 training images in global batches of 4 (2 per process), 6 validation images
    (4 + 2: process 1 has no part of the last batch), 2 epochs under the launcher (a resume
    under torchrun: tests/test_distributed_pytorch.py)."""
    data = tmp_path / "data"
    _image_folder(data, per_class=4)
    flags = ["--dataset", "imagenet", "--data-dir", str(data), "--image-size", "32", "--layers",
             "1", "1", "1", "1", "1", "--batch-size", "4", "--lr", "0.02", "--workers", "0"]
    straight = tmp_path / "straight"
    result = train(*flags, "--epochs", "2", "--log-dir", str(straight), launcher=TORCHRUN)
    assert "2 process(es) on cpu" in result.stdout
    rows = metrics(straight)
    assert [r["epoch"] for r in rows] == [0, 1]
    # the metrics cover the 6 validation images once each, as one process sees them
    assert_validation(rows[1], straight, flags, num_classes=2)
    # process 0's model card: the validation crop's side, ImageNet's statistics, the folders
    card = json.loads((straight / "model.json").read_text())
    assert (card["kwargs"], card["input_size"], card["classes"]) == \
        ({"num_classes": 2, "layers": [1] * 5, "kernels": [3, 3, 3, 3, 1]}, 32, ["ant", "bee"])
    assert_close(card["mean"], [0.485, 0.456, 0.406], np.float32, "card mean")


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("world", [1, 2, 4])
def test_processes_share_every_batch_of_one_process(world, drop_last):
    """Global batch b of ``world`` processes holds the images of batch b in one process,
    in order, each once and augmented alike; a short last batch fills the first processes'
    parts."""
    class Numbers:
        images = labels = np.arange(10)

        def __len__(self):
            return 10

    def loader(cls, **kw):  # an "augmentation" that adds a random draw to the image
        return cls(Numbers(), 4, lambda image, rng: image + rng.random(), shuffle=True,
                   drop_last=drop_last, seed=3, workers=0, **kw)

    one = list(loader(BatchLoader).epoch(5))
    shards = [list(loader(ShardLoader, rank=r, world=world).epoch(5)) for r in range(world)]
    assert [len(s) for s in shards] == [len(loader(ShardLoader, rank=r, world=world))
                                        for r in range(world)]
    for b, (images, labels) in enumerate(one):
        parts = [s[b] for s in shards if b < len(s)]
        assert np.array_equal(np.concatenate([part_labels for _, part_labels in parts]), labels)
        assert np.array_equal(np.concatenate([part_images for part_images, _ in parts]), images)
        assert all(len(part_labels) == 4 // world for _, part_labels in parts[:-1])
    assert sum(len(labels) for s in shards for _, labels in s) == (8 if drop_last else 10)
    assert len({round(float(x - int(x)), 12) for images, _ in one for x in images}) == len(
        [x for images, _ in one for x in images]), "every image draws its own augmentation"


@pytest.mark.parametrize("config", sorted((ROOT / "pytorch_impl" / "configs").glob("san*.yaml")),
                         ids=lambda path: path.stem)
def test_configs_hold_the_reference_recipe(config):
    """Each YAML config: hszhao/SAN's ImageNet recipe for its model; flags override it."""
    args = parse_args("", ["--config", str(config), "--data-dir", "x", "--epochs", "3"])
    assert args.model == config.stem and args.dataset == "imagenet" and args.image_size == 224
    assert (args.lr, args.momentum, args.wd, args.label_smoothing, args.batch_size) == \
        (0.1, 0.9, 1e-4, 0.1, 256)
    assert args.kernels == (3, 7, 7, 7, 7) and args.epochs == 3  # 100 in the file
    assert args.layers == {"10": [2, 1, 2, 4, 1], "15": [3, 2, 3, 5, 2],
                           "19": [3, 3, 4, 6, 3]}[config.stem[3:5]]


def test_bad_input_gives_a_clear_error(tmp_path, capsys, refusal):
    with pytest.raises(SystemExit) as exit_:
        train_san.main(["--dataset", "imagenet", "--data-dir", str(tmp_path), "--image-size", "64"])
    assert exit_.value.code == 2 and "do not fit 64x64 images" in capsys.readouterr().err
    (tmp_path / "typo.yaml").write_text("model: san10_pairwise\nlearning_rate: 0.1\n")
    with pytest.raises(SystemExit) as exit_:
        parse_args("", ["--config", str(tmp_path / "typo.yaml")])
    assert exit_.value.code == 2 and "unknown keys learning_rate" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        train_san.main(["--resume", "--log-dir", str(tmp_path / "none"), *SMALL])
    assert exit_.value.code == 2 and "holds no run to continue" in capsys.readouterr().err
    assert "--batch-size 4 must be a multiple of the 3 processes" in refusal(
        build_loaders, parse_args("", SMALL), Processes(world=3))


def test_paddle_run_and_exact_resume(tmp_path):
    """paddle_impl.train_san: the run folder, and 1 epoch + --resume = 2 epochs at once."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    module = "paddle_impl.train_san"
    train(*SMALL, "--epochs", "2", "--log-dir", str(straight), module=module)
    train(*SMALL, "--epochs", "2", "--stop-after", "1", "--log-dir", str(resumed), module=module)
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
    assert all(0 <= r["val_acc"] <= r["val_top5"] <= 1 for r in rows)
    assert {"model-best.pdparams", "train-state.pdopt"} <= set(os.listdir(resumed))
