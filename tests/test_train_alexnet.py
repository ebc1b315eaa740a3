"""The AlexNet train scripts, Paddle native and the PyTorch and Gluon ports: the run folder the
suite reads, a resume that continues bit for bit after an interruption, and clear errors.

The scripts run in subprocesses: their TensorBoard writer must not share a process with
mxboard, which other tests may have imported."""
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

from common.checkpoint import load_gluon_params, load_pdparams

SCRIPTS = {"paddle": ("paddle_impl.train_alexnet", "pdparams", "pdopt"),
           "pytorch": ("pytorch_impl.train_alexnet", "pth", "pth"),
           "gluon": ("gluon_impl.train_alexnet", "params", "params")}
# two short epochs of plain AlexNet on the embedded digits (the cheapest real run)
ARGS = ["--model", "alexnet", "--batch-size", "8", "--max-batches", "2", "--epochs", "2",
        "--workers", "1", "--grid", "6"]


def read_weights(path):
    if path.suffix == ".pdparams":
        return load_pdparams(path)
    if path.suffix == ".params":
        return load_gluon_params(path)
    import torch
    return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}


# runs a script, stopping it (exit 3) right after it saved the train state of its first epoch
INTERRUPTED = """
import sys
from {module} import main
import common.fit as loop
save = loop.save_train_state
def save_then_stop(*args, **kwargs):
    save(*args, **kwargs)
    sys.exit(3)
loop.save_train_state = save_then_stop
main(sys.argv[1:])
"""


def run(args, module=None, code=None):
    cmd = [sys.executable] + (["-c", code] if code else ["-m", module]) + args
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("framework", sorted(SCRIPTS))
def test_run_folder_and_exact_resume(framework, tmp_path):
    module, ext, state_ext = SCRIPTS[framework]
    full, cut = tmp_path / "full", tmp_path / "cut"
    code, output = run(ARGS + ["--log-dir", str(full)], module)
    assert code == 0, output[-3000:]
    for name in (f"model-best.{ext}", f"model-last.{ext}", f"train-state.{state_ext}",
                 "metrics.jsonl", "train.log", "learning-curves.png", "predictions.png"):
        assert (full / name).stat().st_size > 0, name
    assert (full / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "images/s" in (full / "train.log").read_text()
    weights = read_weights(full / f"model-last.{ext}")
    assert len(weights) == 16 and weights["classifier.6.bias"].dtype == np.float32
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    for r in records:
        assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(r)
        assert np.isfinite(r["train_loss"]) and r["train_loss"] > 0 and 0 <= r["val_acc"] <= 1

    # the same run, stopped once its first epoch is saved, then resumed
    code, output = run(ARGS + ["--log-dir", str(cut)], code=INTERRUPTED.format(module=module))
    assert code == 3, output[-3000:]
    assert (cut / "learning-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # after each epoch
    code, output = run(ARGS + ["--log-dir", str(cut), "--resume"], module)
    assert code == 0, output[-3000:]
    resumed = read_weights(cut / f"model-last.{ext}")
    for name, value in weights.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    again = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["train_loss"], r["val_loss"]) for r in again] == \
        [(r["epoch"], r["train_loss"], r["val_loss"]) for r in records]


@pytest.mark.parametrize("framework", sorted(SCRIPTS))
def test_bad_input_fails_clearly(framework, tmp_path, capsys):
    script = importlib.import_module(SCRIPTS[framework][0])
    for argv, message in ((["--dataset", "cifar10"], "needs --data-dir"),
                          (["--label-smoothing", "1"], "--label-smoothing"),
                          (["--model", "resnet50"], "invalid choice")):
        with pytest.raises(SystemExit):
            script.parse_args(argv)
        assert message in capsys.readouterr().err
    code, output = run(["--log-dir", str(tmp_path), "--resume"], SCRIPTS[framework][0])
    assert code == 2 and output.startswith("error: --resume:") and "holds no run" in output


def test_every_script_takes_the_same_flags():
    """The recipe's flags are the same everywhere; each framework adds its device and
    precision flags."""
    argv = ["--model", "alexnet", "--mixup-alpha", "0.2", "--epochs", "3", "--max-batches", "5"]
    own = {"paddle": {"device": None, "amp": False},
           "pytorch": {"device": None, "amp": False, "channels_last": False, "sync_bn": False,
                       "compile": False},
           "gluon": {"ctx": None, "amp": False, "kvstore": "device"}}
    parsed = {port: vars(importlib.import_module(SCRIPTS[port][0]).parse_args(argv)) for port in own}
    recipe = {k: v for k, v in parsed["paddle"].items() if k not in own["paddle"]}
    for port, args in parsed.items():
        assert args == dict(recipe, **own[port]), port
    assert (recipe["batch_size"], recipe["lr"], recipe["wd"], recipe["seed"],
            recipe["label_smoothing"]) == (128, 5e-4, 1e-5, 42, 0.1)  # the recipe's
