"""The PyTorch train scripts under ``torchrun`` (DistributedDataParallel, two CPU processes
joined through gloo: :func:`pytorch_impl.session.join_processes`), and the flags of several
processes that cannot work here.

Two processes of one global batch do not compute what one process does with that batch when
the model has BatchNorm: each process normalises its share with the share's statistics, and
``--sync-bn`` (torch's SyncBatchNorm) refuses CPU tensors. The equality test therefore holds
UPANets under torchrun to what data parallelism computes, done here in one process: every
step, the gradient is the mean of the gradients of the two shares of the batch (each share's
forward in training mode, with its own statistics), and the BatchNorm running statistics are
those of process 0, updated by the first share alone (DistributedDataParallel hands every
process the buffers of process 0 before each training forward). The run is cut after its
first epoch and continued with ``--resume``, so the same comparison proves that one epoch +
``--resume`` under the launcher continues as two straight epochs; the summed training loss
shows that the two processes together read each global batch once, and the running
statistics that process 0 read exactly the first half of it.

A launch costs about 25 CPU-seconds (the launcher and both processes import torch; measured
for UPANets), over half of it starting up: UPANets is launched twice, the Residual Attention
Network and AlexNet once each for a 1-batch run; SAN's launches are in test_train_san.py.
"""
import copy
import re
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common import runs, upanets_recipe
from common.fit import batches_per_epoch
from parity_tests.tolerances import assert_close
from pytorch_impl import create_model, layers
from pytorch_impl.session import add_device_args, join_processes, sync_batch_norm

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m")
UPANETS = ["--batch-size", "4", "--max-batches", "2", "--epochs", "2", "--workers", "0",
           "--log-interval", "0"]


def launch(module, *args):
    """``torchrun --nproc_per_node 2 -m module args`` on one thread per process; its stdout."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([*TORCHRUN, module, *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def data_parallel_upanets(argv, world=2):
    """(state_dict, mean training loss of every epoch) of UPANets trained by ``world``
    processes with the script's flags ``argv``, computed in this process on one thread as
    DistributedDataParallel does (see the module's docstring)."""
    args = upanets_recipe.parse("pytorch", argv, add_device_args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(args.seed)
            train_set, _, loader, _ = runs.build_loaders(args, *args.transforms)
            model = create_model(args.model, num_classes=train_set.num_classes,
                                 img_size=args.img_size, blocks=args.blocks)
            optimizer = torch.optim.SGD(model.parameters(), lr=args.lr,
                                        momentum=upanets_recipe.MOMENTUM, weight_decay=args.wd)
            lr_at, losses = upanets_recipe.lr_at(args), []
            steps = batches_per_epoch(loader, args.max_batches)
            model.train()
            for epoch in range(args.epochs):
                total = 0.0
                for b, (images, labels) in zip(range(steps), loader.epoch(epoch)):
                    grads, kept = [], None
                    for x, y in zip(np.split(images, world), np.split(labels, world)):
                        model.zero_grad()
                        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
                        loss.backward()
                        grads.append([p.grad.clone() for p in model.parameters()])
                        total += loss.item() * len(y)
                        if kept is None:  # the running statistics of process 0's share
                            kept = {k: v.clone() for k, v in model.named_buffers()}
                    model.load_state_dict(kept, strict=False)
                    for p, *share in zip(model.parameters(), *grads):
                        p.grad = sum(share) / world
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at(epoch, b, steps)
                    optimizer.step()
                losses.append(total / (steps * args.batch_size))
    finally:
        torch.set_num_threads(threads)
    return model.state_dict(), losses


@pytest.mark.slow
def test_two_processes_train_as_data_parallelism_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    flags = [*UPANETS, "--log-dir", str(run_dir)]
    launch("pytorch_impl.train_upanets", *flags, "--stop-after", "1")
    out = launch("pytorch_impl.train_upanets", *flags, "--resume")
    expected, losses = data_parallel_upanets(UPANETS)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert_close([r["train_loss"] for r in records], losses, np.float32, "mean training loss")
    actual = torch.load(run_dir / "model-last.pth", weights_only=True)
    assert actual.keys() == expected.keys()  # the unwrapped model's names: no "module."
    for key, value in expected.items():
        assert_close(actual[key], value, np.float32, f"after 4 steps: {key}")
    # process 0 alone wrote the folder: one line per epoch and per start, one event file a start
    log = (run_dir / "train.log").read_text()
    assert (log.count("[epoch 0]"), log.count("[epoch 1]"), log.count("CPU threads"),
            log.count("resumed after epoch 0")) == (1, 1, 2, 1)
    assert out.count("[epoch 1]") == 1
    files = sorted(os.listdir(run_dir))
    assert [f for f in files if not f.startswith("events.out.tfevents.")] == [
        "args.yaml", "learning-curves.png", "metrics.jsonl", "model-best.pth", "model-last.pth",
        "model.json", "train-state.json", "train-state.pth", "train.log"]
    assert len(files) == 9 + 2


@pytest.mark.slow
@pytest.mark.parametrize("module, model, flags", [
    ("pytorch_impl.train_attention", "attention56_cifar", []),
    ("pytorch_impl.train_alexnet", "alexnet", ["--model", "alexnet", "--grid", "2"]),
], ids=["attention", "alexnet"])
def test_other_scripts_run_one_batch_under_torchrun(module, model, flags, tmp_path):
    """A 1-batch epoch of 2 x 2 images: the run folder of process 0, the unwrapped model's
    float32 weights."""
    launch(module, *flags, "--batch-size", "4", "--max-batches", "1", "--epochs", "1",
           "--workers", "0", "--log-interval", "0", "--log-dir", str(tmp_path))
    records = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 1 and np.isfinite(json.loads(records[0])["train_loss"])
    assert (tmp_path / "train.log").read_text().count("[epoch 0]") == 1
    state = torch.load(tmp_path / "model-last.pth", weights_only=True)
    assert state.keys() == create_model(model, num_classes=10).state_dict().keys()
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def test_sync_batch_norm_keeps_the_model_and_its_names(refusal):
    """--sync-bn's conversion of the project's BatchNorm (no num_batches_tracked): the same
    checkpoint names; in a single process SyncBatchNorm computes what BatchNorm does."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), layers.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(64, 6), layers.BatchNorm1d(6))
    reference = copy.deepcopy(model)
    converted = sync_batch_norm(model)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == 2
    assert converted.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(5, 3, 6, 6)
    assert_close(converted.train()(x).detach(), reference.train()(x).detach(), np.float32, "output")
    for (key, value), expected in zip(converted.state_dict().items(), reference.state_dict().values()):
        assert_close(value, expected, np.float32, key)
    gluon_port = nn.Sequential(nn.Conv2d(3, 4, 3), layers.BatchNorm2d(4, biased_var=True))
    assert re.match(r"^error: --sync-bn: .* this model's 1 BatchNorm layers \(first: 1\) keep "
                    r"MXNet's biased one$", refusal(sync_batch_norm, gluon_port))


def test_flags_that_cannot_work_end_with_one_line(monkeypatch, refusal):
    from pytorch_impl.train_upanets import main
    assert refusal(main, ["--sync-bn", "--device", "cpu", "--log-dir", "/nonexistent/never-written"]
                   ).startswith("error: --sync-bn: torch's SyncBatchNorm runs on GPUs only")
    assert refusal(main, ["--device", "gpu", "--log-dir", "/nonexistent/never-written"]) == \
        "error: --device gpu: not cpu, cuda or cuda:N"
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts a process; no group is joined
    monkeypatch.setenv("LOCAL_RANK", "1")
    args = upanets_recipe.parse("pytorch", ["--device", "cuda:1"], add_device_args)
    assert refusal(lambda: join_processes(args).__enter__()).startswith(
        "error: --device cuda:1: under torchrun each process ")
    if not torch.cuda.is_available():
        args.device = "cuda"
        assert refusal(lambda: join_processes(args).__enter__()) == \
            "error: --device cuda: no CUDA device is available"
