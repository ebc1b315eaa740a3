"""The Residual Attention Network train scripts, run as subprocesses (mxboard and tensorboard
must not share a process) on the embedded digits dataset with tiny budgets:

* each script writes its run folder (weights-only ``model-best``/``model-last`` in its native
  format, resume state apart, ``metrics.jsonl``, ``train.log``, TensorBoard events);
* ``--resume`` after an interrupted run (``--stop-after 2``) of the Gluon script ends bit for
  bit where an uninterrupted run ends;
* the PyTorch and Paddle scripts, interrupted and resumed, reproduce the Gluon script from the
  same weights, in float64, through three NAG steps with warmup + cosine, mixup and label
  smoothing;
* all normalise with the original's ImageNet mean/std (the recipe's transforms);
* bad flags and inputs fail at once with a clear message (in this process: no board is opened).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import attention_recipe
from common.checkpoint import load_gluon_params, load_pdparams
from common.convert import to_canonical
from common.data import get_dataset
from common.fit import STATE_FILE
from parity_tests.tolerances import assert_close

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"gluon": "gluon_impl.train_attention", "pytorch": "pytorch_impl.train_attention",
           "paddle": "paddle_impl.train_attention"}
EXT = {"gluon": "params", "pytorch": "pth", "paddle": "pdparams"}
OPTIMIZER_EXT = {**EXT, "paddle": "pdopt"}
PORTS = ("pytorch", "paddle")
# three epochs of one batch of 4: lr 0.01, then 0 twice (gluoncv's warmup + cosine over three
# updates), where MXNet's momentum still moves the weights and torch's rule would not; mixup in
# all three (epoch < 0.9 * 3)
TINY = ["--epochs", "3", "--max-batches", "1", "--batch-size", "4", "--workers", "0",
        "--lr", "0.01", "--warmup-epochs", "1", "--mix-up", "1", "--epsilon", "0.1",
        "--dtype", "float64"]


def run(framework, *args):
    """Run a train script; one OpenMP thread, since a multi-threaded torch on an oversubscribed
    CPU waits at every barrier (measured: 20x slower on a loaded 2-core machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", SCRIPTS[framework], *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"{framework} script failed:\n{result.stdout}\n{result.stderr}")
    return result


def weights(framework, path):
    """A run's weights as canonical (PyTorch-named) numpy arrays, read without its framework
    where possible."""
    if framework == "gluon":
        return to_canonical(load_gluon_params(path), "gluon")
    if framework == "paddle":
        return to_canonical(load_pdparams(path), "paddle")
    import torch
    return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}


def metrics(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def init_weights(tmp_path_factory):
    """One set of MSRAPrelu weights for every script, as a Gluon ``.params`` file."""
    path = tmp_path_factory.mktemp("init") / "init.params"
    code = ("import mxnet as mx; from gluon_impl import create_model; "
            "n = create_model('attention56_cifar'); n.initialize(mx.init.MSRAPrelu()); "
            f"n.save_parameters({str(path)!r})")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return path


@pytest.fixture(scope="module")
def float64_runs(init_weights, tmp_path_factory):
    """Every script from the same weights with the same flags, in float64: the native Gluon
    script uninterrupted, each port stopped after two epochs (``--stop-after 2``) and resumed,
    so that the ports' parity with Gluon holds across a resume."""
    dirs = {}
    for framework in SCRIPTS:
        dirs[framework] = tmp_path_factory.mktemp(f"{framework}-run")
        flags = [*TINY, "--init-from", str(init_weights), "--log-dir", str(dirs[framework])]
        if framework == "gluon":
            run(framework, *flags)
            continue
        run(framework, *flags, "--stop-after", "2")
        assert [r["epoch"] for r in metrics(dirs[framework])] == [0, 1]
        run(framework, *flags, "--resume")
    return dirs


@pytest.mark.parametrize("framework", list(SCRIPTS))
def test_run_folder(float64_runs, framework):
    run_dir = float64_runs[framework]
    for name in (f"model-best.{EXT[framework]}", f"model-last.{EXT[framework]}", "train.log",
                 f"train-state.{OPTIMIZER_EXT[framework]}", STATE_FILE, "learning-curves.png", "args.yaml"):
        assert (run_dir / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    records = metrics(run_dir)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    for r in records:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "samples_per_s"):
            assert np.isfinite(r[key]), key
    # the weights files hold the model's weights only
    state = weights(framework, run_dir / f"model-last.{EXT[framework]}")
    assert all(k.startswith(("features.", "output.")) for k in state)


@pytest.mark.parametrize("port", PORTS)
def test_port_script_reproduces_gluon_script_float64(float64_runs, port):
    gluon = weights("gluon", float64_runs["gluon"] / "model-last.params")
    actual = weights(port, float64_runs[port] / f"model-last.{EXT[port]}")
    assert gluon.keys() == actual.keys()
    for key, value in gluon.items():
        assert_close(actual[key], value, np.float64, f"after 3 steps: {key}")
    for g, t in zip(metrics(float64_runs["gluon"]), metrics(float64_runs[port])):
        for key in ("train_loss", "val_loss", "lr"):
            assert_close(t[key], g[key], np.float64, f"epoch {g['epoch']} {key}")
        assert t["train_acc"] == g["train_acc"] and t["val_acc"] == g["val_acc"]


def test_resume_continues_exactly(float64_runs, init_weights, tmp_path):
    """The native script stopped after two epochs and resumed ends bit for bit where its
    uninterrupted run ends (the ports resume in ``float64_runs``, where the parity test holds
    them to this run)."""
    flags = [*TINY, "--init-from", str(init_weights), "--log-dir", str(tmp_path)]
    run("gluon", *flags, "--stop-after", "2")
    assert [r["epoch"] for r in metrics(tmp_path)] == [0, 1]
    run("gluon", *flags, "--resume")
    full = weights("gluon", float64_runs["gluon"] / "model-last.params")
    resumed = weights("gluon", tmp_path / "model-last.params")
    for key, value in full.items():
        assert np.array_equal(resumed[key], value), key
    assert [r["train_loss"] for r in metrics(tmp_path)] == \
        [r["train_loss"] for r in metrics(float64_runs["gluon"])]


def main(framework):
    """The script's ``main``, called in this process."""
    module = __import__(SCRIPTS[framework], fromlist=["main"])
    return module.main


@pytest.mark.parametrize("framework", list(SCRIPTS))
def test_bad_flags_fail_clearly(framework, tmp_path, capsys, refusal):
    for flags, message in ((["--model", "attention57"], "invalid choice: 'attention57'"),
                           (["--lr-steps", "80,x"], "--lr-steps must be comma-separated"),
                           (["--epsilon", "1"], "--label-smoothing must lie in [0, 1)")):
        with pytest.raises(SystemExit) as exit_:
            main(framework)(flags)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(framework)(["--log-dir", str(tmp_path / "empty"), "--resume"])
    assert exit_.value.code == 2 and "holds no run to continue" in capsys.readouterr().err
    for flag in ("--initial-checkpoint", "--init-from"):  # the family's older spelling
        line = refusal(main(framework), ["--log-dir", str(tmp_path / "run"), flag,
                                         str(tmp_path / "missing.params")])
        assert re.match(r"^error: --initial-checkpoint: .*missing.params: no such file$", line), line


def test_normalisation_is_the_originals():
    """The recipe normalises with cifar10_train.py's ImageNet mean/std on [0, 1] pixels, in
    training (after the pad-4 crop and flip) and in testing; ``--norm-stats dataset`` keeps
    the dataset's own."""
    mean, std = (np.array(v) for v in attention_recipe.NORM_STATS["imagenet"])
    assert_close(mean, [0.485, 0.456, 0.406], np.float64, "recipe mean")
    assert_close(std, [0.229, 0.224, 0.225], np.float64, "recipe std")
    data = get_dataset("digits", "train")
    image = data.images[0]
    train, test = attention_recipe.recipe_transforms()
    expected = (image / 255.0 - mean) / std
    assert_close(test(data.mean, data.std)(image, None), expected.transpose(2, 0, 1), np.float32,
                 "test image")
    # a training crop, mapped back with the same constants, is whole pixel values again
    crop = train(data.mean, data.std)(image, np.random.default_rng(0)).transpose(1, 2, 0)
    pixels = (crop * std + mean) * 255
    assert_close(pixels, np.round(pixels), np.float32, "training crop in pixels")
    _, own = attention_recipe.recipe_transforms("dataset")
    expected = (image / 255.0 - np.array(data.mean)) / np.array(data.std)
    assert_close(own(data.mean, data.std)(image, None), expected.transpose(2, 0, 1), np.float32,
                 "--norm-stats dataset")
