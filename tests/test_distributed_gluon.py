"""Gluon training in several processes through MXNet's ``dist_sync`` kvstore, started by
``scripts/launch_gluon.py`` (a scheduler, a server and two workers on this machine).

A reduced SAN trains 2 epochs of one global batch of 8 on the embedded digits; the
reference is one process with two CPU contexts (``--ctx cpu0,cpu1``), whose halves of every
batch are the workers' shares: each context, as each worker, normalises its half in its
BatchNorms (so no one-context run is the same), and both average the running statistics
before evaluating. The two-worker run, 1 epoch and then ``--resume`` under the launcher,
ends at the reference's weights and metrics within the float32 tolerance: a worker reading
more or less than its share would sum other gradients. Worker 0 alone writes the run
folder: a second writer would repeat every epoch's line of ``metrics.jsonl`` and
``train.log``. A worker's one-line error stops the launch with its exit status."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.checkpoint import load_gluon_params
from gluon_impl import train_san
from parity_tests.tolerances import assert_close

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--layers", "1", "1", "1", "1", "1", "--batch-size", "8", "--lr", "0.01",
         "--max-batches", "1", "--workers", "0", "--log-interval", "0", "--epochs", "2"]


def python_m(*args, **env):
    """``python -m *args`` in a fresh process from the repository, with ``env`` added."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=600)


def launch(*args, workers=2, module="gluon_impl.train_san"):
    """``python -m scripts.launch_gluon -n workers -m module *args``."""
    return python_m("scripts.launch_gluon", "-n", str(workers), "-m", module, *args,
                    OMP_NUM_THREADS="1")


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_workers_resume_at_the_two_context_run(tmp_path):
    reference, run = tmp_path / "two-contexts", tmp_path / "two-workers"
    train_san.main([*SMALL, "--ctx", "cpu0,cpu1", "--threads", "1", "--log-dir", str(reference)])
    first = launch(*SMALL, "--stop-after", "1", "--log-dir", str(run))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "DMLC_ROLE=worker python -m gluon_impl.train_san" in first.stdout  # several hosts
    resumed = launch(*SMALL, "--resume", "--log-dir", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert log.count("2 process(es) on cpu(0)") == 2 and log.count("resumed after epoch 0") == 1
    rows, expected = metrics(run), metrics(reference)
    assert [r["epoch"] for r in rows] == [0, 1]
    for row, want in zip(rows, expected):
        for key in ("train_loss", "val_loss"):
            assert_close(row[key], want[key], np.float32, f"epoch {row['epoch']} {key}")
        assert (row["val_acc"], row["val_top5"]) == (want["val_acc"], want["val_top5"])
    weights, want = (load_gluon_params(d / "model-last.params") for d in (run, reference))
    assert set(weights) == set(want) and len(want) > 100
    for k, value in want.items():  # the running statistics too: both average them
        assert_close(weights[k], value, np.float32, k)


def test_a_worker_error_ends_the_launch(tmp_path):
    """9 images per batch cannot be shared by 2 workers: each says so, the launcher stops
    the scheduler and server and returns the workers' status."""
    done = launch(*SMALL[:6], "--batch-size", "9", "--log-dir", str(tmp_path / "run"))
    assert done.returncode == 2
    assert ("error: --batch-size 9 must be a multiple of the 2 workers times the 1 contexts "
            "of each") in done.stderr
    assert not (tmp_path / "run").exists()


def test_dist_sync_without_the_launcher_is_one_line(tmp_path, capsys, monkeypatch):
    for name in ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER",
                 "DMLC_NUM_WORKER"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_:
        train_san.main([*SMALL, "--kvstore", "dist_sync", "--log-dir", str(tmp_path / "run")])
    assert exit_.value.code == 2 and capsys.readouterr().err == (
        "error: --kvstore dist_sync: DMLC_ROLE, DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT, "
        "DMLC_NUM_SERVER, DMLC_NUM_WORKER not set; start the workers with python -m "
        "scripts.launch_gluon (see its --help for several hosts)\n")


@pytest.mark.slow
@pytest.mark.parametrize("module", ["gluon_impl.train_attention", "gluon_impl.train_upanets"],
                         ids=["attention", "upanets"])
def test_other_scripts_take_the_two_context_step(module, tmp_path):
    """One batch of 2 x 2 images under the launcher ends at the weights of the same step on
    two contexts (the kvstore keys initialised by ``gluon_impl.session.init_keys``, without
    which the SAN launch above aborts its server). Both run in fresh processes (mxboard's
    protos clash with tensorboard's once a process has loaded those)."""
    flags = ["--batch-size", "4", "--max-batches", "1", "--epochs", "1", "--workers", "0",
             "--log-interval", "0"]
    reference = python_m(module, *flags, "--ctx", "cpu0,cpu1", "--threads", "1",
                         "--log-dir", str(tmp_path / "two-contexts"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    done = launch(*flags, "--log-dir", str(tmp_path / "two-workers"), module=module)
    assert done.returncode == 0, done.stderr[-3000:]
    weights, want = (load_gluon_params(tmp_path / d / "model-last.params")
                     for d in ("two-workers", "two-contexts"))
    assert set(weights) == set(want) and len(want) > 50
    for k, value in want.items():
        assert_close(weights[k], value, np.float32, k)
