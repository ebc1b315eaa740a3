"""The Paddle train scripts under ``python -m paddle.distributed.launch`` on the CPU (gloo,
paddle.DataParallel: paddle_impl/session.py), on a reduced SAN (one block per stage).

A two-process run of global batches of 4 (2 per process) for 2 epochs of one batch, 1 epoch
and then ``--resume``, both under the launcher, is held to a reference computed here in one
process. SAN has BatchNorm, which normalises each process's share on its own, so the
reference is not the one-process run of the same batch: each of its steps takes the mean of
the gradients of the two shares (each share normalised alone, as each process does), and
its running statistics follow share 0 alone, as process 0's, the one that saves them. The
weights it saves and the metrics it logs must match the reference within the float32
tolerance of parity_tests/tolerances.py: the gradients were averaged over the processes,
each process read its own share, the metrics cover both shares once, the evaluation ran
with process 0's statistics in every process, and the resumed run continued from the
state of the first. Only process 0 writes: each epoch is logged once, and process 1's
output holds no epoch line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from common.checkpoint import load_pdparams
from common.labels import one_hot, smooth_uniform
from common.processes import Processes
from common.san_recipe import build_loaders, lr_at, parse_args
from paddle_impl import create_model, set_threads
from paddle_impl.session import soft_cross_entropy
from paddle_impl.train_san import make_optimizer
from parity_tests.tolerances import assert_close

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--layers", "1", "1", "1", "1", "1", "--batch-size", "4", "--max-batches", "1",
         "--epochs", "2", "--lr", "0.02", "--workers", "0", "--threads", "1", "--log-interval", "0"]
KWARGS = dict(num_classes=10, layers=(1,) * 5, kernels=(3, 3, 3, 3, 1))


def launch(launch_dir, *flags):
    """``python -m paddle.distributed.launch --nproc_per_node 2 python -m
    paddle_impl.train_san FLAGS flags`` (the launcher runs ``-m`` modules through the
    interpreter named as its script); returns process 1's output."""
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(launch_dir), sys.executable, "-m", "paddle_impl.train_san",
               *FLAGS, *flags]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    logs = {rank: (launch_dir / f"workerlog.{rank}").read_text() for rank in (0, 1)}
    if done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stderr[-2000:]}\n"
                             f"{logs[0][-3000:]}\n{logs[1][-3000:]}")
    return logs[1]


def reference():
    """(state, train losses, test loss of the last epoch) of the run above, in this process on
    one thread as each launched process (a tiny batch through BatchNorm turns the round-off
    of another thread count into differences above the tolerance): each step from the mean
    of the two shares' gradients, the running statistics from share 0."""
    set_threads(1)
    try:
        return one_thread_reference()
    finally:
        set_threads(len(os.sched_getaffinity(0)))  # the test process's count (conftest.py)


def one_thread_reference():
    args = parse_args("", FLAGS)
    _, _, train_loader, test_loader = build_loaders(args, Processes())
    paddle.seed(args.seed)
    model = create_model("san10_pairwise", **KWARGS)
    optimizer, rate = make_optimizer(model, args), lr_at(args)
    model.train()
    losses = []
    for epoch in range(args.epochs):
        images, labels = next(iter(train_loader.epoch(epoch)))
        x = paddle.to_tensor(images)
        t = paddle.to_tensor(smooth_uniform(labels, 10, args.label_smoothing))
        statistics = [(p, p.numpy()) for p in model.parameters() if p.stop_gradient]
        share_losses = []
        for share in (slice(2, 4), slice(0, 2)):  # share 0 last: its statistics stay
            for tensor, value in statistics:  # BatchNorm's running statistics
                tensor.set_value(value)
            loss = soft_cross_entropy(model(x[share]), t[share])
            (loss / 2).backward()  # gradients accumulate: the mean of the two
            share_losses.append(float(loss))
        optimizer.set_lr(rate(epoch, 0, 1))
        optimizer.step()
        optimizer.clear_grad()
        losses.append(np.mean(share_losses))
    model.eval()
    images, labels = next(iter(test_loader.epoch(0)))
    with paddle.no_grad():
        logits = model(paddle.to_tensor(images))
        test_loss = float(soft_cross_entropy(logits, paddle.to_tensor(one_hot(labels, 10))))
    return {k: v.numpy() for k, v in model.state_dict().items()}, losses, test_loss


@pytest.mark.slow
def test_two_cpu_processes_resume_and_match_the_mean_of_the_shares(tmp_path):
    run = tmp_path / "run"
    first = launch(tmp_path / "launch-1", "--stop-after", "1", "--log-dir", str(run))
    resumed = launch(tmp_path / "launch-2", "--resume", "--log-dir", str(run))
    state, losses, test_loss = reference()
    saved = load_pdparams(run / "model-last.pdparams")
    assert set(saved) == set(state) and len(state) > 100
    for name in state:
        assert_close(saved[name], state[name], np.float32, name)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert_close([r["train_loss"] for r in rows], losses, np.float32, "train_loss")
    assert_close(rows[1]["val_loss"], test_loss, np.float32, "val_loss")
    log = (run / "train.log").read_text()
    assert log.count("resumed after epoch 0") == 1 and log.count("[epoch 1]") == 1
    assert "2 process(es) on cpu" in log
    assert "[epoch" not in first + resumed and "process(es)" not in first + resumed
