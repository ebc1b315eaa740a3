"""The run folder every train script writes: log, metrics, TensorBoard scalars; flags."""
import argparse
import json

import pytest

from common.runs import RunLog, add_common_args, build_loaders, cifar_transforms, parse


def test_run_log_writes_what_a_dashboard_reads(tmp_path):
    log = RunLog(tmp_path, "demo")
    log.epoch(0, train_loss=2.0, val_acc=0.25)
    log.epoch(1, train_loss=1.5, val_acc=0.5)
    log.close()
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["val_acc"] for l in lines] == [0.25, 0.5]
    assert "[epoch 1] train_loss 1.5000  val_acc 0.5000" in (tmp_path / "train.log").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(0, 2.0), (1, 1.5)]
    resumed = RunLog(tmp_path, "demo", resume=True, board=None)
    assert len(resumed.history()) == 2
    resumed.close()
    assert RunLog(tmp_path, "demo", board=None).history() == []


def test_flags_and_loaders():
    parser = add_common_args(argparse.ArgumentParser(), batch_size=100)
    args = parse(parser, ["--epochs", "2"])
    assert args.batch_size == 100 and args.dataset == "digits"
    train, test, train_loader, test_loader = build_loaders(args, *cifar_transforms())
    assert len(train_loader) == 1437 // 100 and len(test_loader) == 4
    for bad in (["--epochs", "0"], ["--dataset", "cifar10"]):
        with pytest.raises(SystemExit):
            parse(parser, bad)
