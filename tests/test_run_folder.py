"""What every train script promises a researcher who leaves it running (common/run_folder.py,
common/runs.py): no run is ever lost, a run describes itself (args.yaml, model card),
progress shows without a terminal, one spelling of every flag, data errors in one line,
corrupt images skipped and counted, learning curves, and no third-party noise."""
import argparse
import importlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import yaml

from common import runs
from common.data import DatasetError
from common.run_folder import FREE_ON_RESUME
from gluon_impl.session import add_device_args as gluon_device_args
from pytorch_impl.session import add_device_args

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = sorted(f"{p.parent.name}.{p.stem}" for p in ROOT.glob("*_impl/train_*.py"))
TINY = ["--batch-size", "4", "--max-batches", "2", "--workers", "0"]


def main(module):
    return importlib.import_module(module).main


def listing(folder):
    """Every file of ``folder`` with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def fake_run(folder):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"epoch": 0, "val_acc": 0.91}\n')
    (folder / "model-best.pth").write_bytes(b"the best weights of a week of training")
    (folder / "train.log").write_text("12:00:00 [epoch 0] val_acc 0.9100\n")
    return listing(folder)


@pytest.mark.parametrize("module", SCRIPTS)
def test_a_run_is_never_replaced(module, tmp_path, capsys):
    """Every train script refuses a folder that holds a run, before writing anything, in one
    line that names the folder and the three ways on; with --overwrite it moves the run aside."""
    folder = tmp_path / "run"
    before = fake_run(folder)
    with pytest.raises(SystemExit) as exit_:
        main(module)(["--log-dir", str(folder)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: {folder} already holds a run")
    for way in ("--resume", "--log-dir", "--overwrite"):
        assert way in err
    assert listing(folder) == before
    assert sorted(os.listdir(tmp_path)) == ["run"]
    # --overwrite moves it aside before anything else (here the data is missing: exit 2)
    with pytest.raises(SystemExit) as exit_:
        main(module)(["--log-dir", str(folder), "--overwrite", "--dataset", "cifar10",
                      "--data-dir", str(tmp_path / "no-data")])
    assert exit_.value.code == 2 and "cifar10 not found" in capsys.readouterr().err
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and listing(aside[0]) == before
    assert "cifar10 not found" in (folder / "train.log").read_text()


@pytest.fixture(scope="module")
def overwritten(tmp_path_factory):
    """A fake run in a folder, then a PyTorch UPANets run there with --overwrite and a progress
    line for every batch; returns (folder, the fake run's files, captured stdout)."""
    tmp = tmp_path_factory.mktemp("overwrite")
    folder = tmp / "run"
    before = fake_run(folder)
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        main("pytorch_impl.train_upanets")([*TINY, "--epochs", "2", "--stop-after", "1",
                                            "--log-dir", str(folder), "--overwrite",
                                            "--log-interval", "1"])
    finally:
        sys.stdout = saved
    return folder, before, out.getvalue()


def test_overwrite_moves_the_old_run_aside(overwritten):
    folder, before, _ = overwritten
    aside = [p for p in folder.parent.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and listing(aside[0]) == before
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0]
    assert f"is now in {aside[0]}" in (folder / "train.log").read_text()


def test_a_run_describes_itself(overwritten):
    folder = overwritten[0]
    record = yaml.safe_load((folder / "args.yaml").read_text())
    assert record["framework"] == "pytorch"
    assert record["command"].startswith("python -m pytorch_impl.train_upanets --batch-size 4")
    assert {"python", "numpy", "torch", "mxnet", "paddlepaddle"} <= set(record["versions"])
    args = record["args"]
    assert (args["batch_size"], args["epochs"], args["lr"], args["wd"], args["model"]) == \
        (4, 2, 0.1, 5e-4, "upanets16")
    card = json.loads((folder / "model.json").read_text())
    assert (card["model"], card["framework"], card["num_classes"], card["input_size"]) == \
        ("upanets16", "pytorch", 10, 32)
    assert card["classes"] == [str(d) for d in range(10)] and len(card["mean"]) == 3


def test_progress_lines_without_a_terminal(overwritten):
    """Under pytest stderr is no terminal: a line per batch (--log-interval 1) on stdout and
    in train.log, with loss, learning rate, images per second and ETA."""
    folder, _, out = overwritten
    log = (folder / "train.log").read_text()
    for text in (out, log):
        lines = [l for l in text.splitlines() if " train 0 [" in l]
        assert [l.split("[")[1].split("]")[0] for l in lines] == ["1/2", "2/2"]
        assert all(" lr 0.1000 " in l and " img/s " in l and " ETA 0:" in l for l in lines)
    assert "test 0 [2/2]" in log


def test_learning_curves_after_each_epoch(overwritten):
    png = overwritten[0] / "learning-curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_refuses_a_changed_schedule(overwritten, capsys):
    folder = overwritten[0]
    before = listing(folder)
    with pytest.raises(SystemExit) as exit_:
        main("pytorch_impl.train_upanets")([*TINY, "--epochs", "2", "--lr", "0.05",
                                            "--log-dir", str(folder), "--resume"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "--lr 0.1 (this command: 0.05)" in err and "--allow-changes" in err
    assert listing(folder) == before
    # --resume PATH names the run by a checkpoint in it; the same flags continue it
    main("pytorch_impl.train_upanets")([*TINY, "--epochs", "2", "--log-interval", "0",
                                        "--workers", "1", "--resume", str(folder / "model-last.pth")])
    assert [json.loads(l)["epoch"] for l in (folder / "metrics.jsonl").read_text().splitlines()] == [0, 1]


def test_small_learning_rates_are_not_shown_as_zero(tmp_path, capsys):
    log = runs.RunLog(tmp_path, "demo", board=None)
    log.epoch(3, lr=5e-05, train_loss=0.25, val_acc=0.0)
    log.close()
    line = capsys.readouterr().out
    assert "lr 5e-05  train_loss 0.2500  val_acc 0.0000" in line
    assert (runs.number(1.23456e-7), runs.number(0.5), runs.number(7)) == ("1.235e-07", "0.5000", "7")


# --------------------------------------------------------------------------- one interface
def parser_of(module):
    """The argparse parser of a train script (built by its family's recipe, with the
    framework's own flags)."""
    framework, family = module.split(".")[0][:-5], module.split("_")[-1]
    recipe = importlib.import_module(f"common.{family}_recipe")
    script = importlib.import_module(module)
    if family == "attention":
        return recipe.build_parser(framework, importlib.import_module(f"{framework}_impl").list_models(),
                                   getattr(script, "add_args", None))
    add_args = {"pytorch": add_device_args, "gluon": gluon_device_args}.get(framework)
    return recipe.build_parser(framework if family == "upanets" else "", add_args)


COMMON_FLAGS = {"-b", "--batch-size", "-j", "--workers", "--lr", "--weight-decay", "--epochs",
                "--log-interval", "--resume", "--overwrite", "--allow-changes", "--stop-after",
                "--strict-data", "--debug", "--initial-checkpoint", "--num-classes"}
RECIPE_FLAGS = {"alexnet": {"--mixup-alpha", "--label-smoothing"}, "san": {"--label-smoothing"},
                "attention": {"--mixup-alpha", "--label-smoothing", "--warmup-epochs"}, "upanets": set()}


@pytest.mark.parametrize("module", SCRIPTS)
def test_one_interface(module):
    """timm's spellings in every script, every default in --help, and --model offers only
    models the framework has."""
    parser = parser_of(module)
    spelled = {s for a in parser._actions for s in a.option_strings}
    assert COMMON_FLAGS | RECIPE_FLAGS[module.split("_")[-1]] <= spelled
    formatter = runs.HelpFormatter(parser.prog)
    assert parser.formatter_class is runs.HelpFormatter
    for action in parser._actions:
        if action.default not in (None, False, argparse.SUPPRESS):
            assert "default" in formatter._get_help_string(action), \
                f"{module} --help does not show the default of {action.option_strings}"
        if action.dest == "model":
            framework = module.split(".")[0]
            assert set(action.choices) <= set(importlib.import_module(framework).list_models())


def test_original_spellings_are_aliases_in_their_family():
    from common.attention_recipe import parse
    parser = parser_of("gluon_impl.train_attention")
    models = importlib.import_module("gluon_impl").list_models()
    original = parse(parser, models, ["--mix-up", "1", "--alpha", "0.2", "--epsilon", "0.1", "--wd", "5e-4"])
    timm = parse(parser_of("gluon_impl.train_attention"), models,
                 ["--mixup-alpha", "0.2", "--label-smoothing", "0.1", "--weight-decay", "5e-4"])
    assert vars(original) == vars(timm)
    assert parse(parser, models, ["--mix-up", "1"]).mixup_alpha == 1.0  # the original's default
    assert parse(parser, models, ["--alpha", "0.4"]).mixup_alpha == 0.0  # no --mix-up: no mixup


def test_choices_are_what_the_script_supports(capsys):
    for module, bad in (("pytorch_impl.train_upanets", "imagenet"), ("gluon_impl.train_attention", "imagenet")):
        with pytest.raises(SystemExit):
            parser_of(module).parse_args(["--dataset", bad])
        assert f"invalid choice: '{bad}'" in capsys.readouterr().err


# --------------------------------------------------------------------------- data errors
def one_error_line(err, *words):
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_missing_data_is_one_line_and_a_retry_is_not_refused(tmp_path, capsys):
    folder, missing = tmp_path / "run", tmp_path / "nowhere"
    argv = [*TINY, "--dataset", "cifar10", "--data-dir", str(missing), "--log-dir", str(folder)]
    with pytest.raises(SystemExit) as exit_:
        main("pytorch_impl.train_upanets")(argv)
    line = one_error_line(capsys.readouterr().err, "cifar10 not found under", str(missing))
    assert exit_.value.code == 2 and line.split(" ", 1)[1] in (folder / "train.log").read_text()
    with pytest.raises(DatasetError):  # --debug: the traceback
        main("pytorch_impl.train_upanets")([*argv, "--debug"])
    # the folder of a start that failed holds no run: the corrected command may use it
    main("pytorch_impl.train_upanets")([*TINY, "--max-batches", "1", "--log-dir", str(folder)])
    assert (folder / "metrics.jsonl").exists() and "not found under" in (folder / "train.log").read_text()


def test_truncated_cifar_archive_is_one_line(tmp_path, capsys):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name in ("batches.meta", "data_batch_1"):  # pixels hardly compress: random bytes
            data = np.random.default_rng(0).integers(0, 256, 100000, dtype=np.uint8).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cut = archive.getvalue()[:len(archive.getvalue()) // 2]  # a download that stopped halfway
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(cut)
    with pytest.raises(SystemExit) as exit_:
        main("paddle_impl.train_alexnet")([*TINY, "--dataset", "cifar10", "--data-dir",
                                           str(tmp_path), "--log-dir", str(tmp_path / "run")])
    assert exit_.value.code == 2
    one_error_line(capsys.readouterr().err, "truncated or not a gzip tar archive")


def image_folder(root):
    """ImageNet layout, two classes, 4 train and 2 val images each, and one corrupt JPEG in train."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in ("ant", "bee"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    (root / "train" / "ant" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return root


SAN_TINY = ["--image-size", "32", "--layers", "1", "1", "1", "1", "1", "--epochs", "1",
            "--batch-size", "3", "--workers", "0"]


def test_a_corrupt_image_is_skipped_and_counted(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    folder = tmp_path / "run"
    main("pytorch_impl.train_san")([*SAN_TINY, "--dataset", "imagenet", "--data-dir", str(data),
                                    "--log-dir", str(folder)])
    captured = capsys.readouterr()
    warnings = [l for l in captured.err.splitlines() if "warning:" in l]
    assert len(warnings) == 1 and "broken.jpg: cannot decode image" in warnings[0]
    assert "skipped_images 1" in captured.out and "broken.jpg" in (folder / "train.log").read_text()
    record = json.loads((folder / "metrics.jsonl").read_text())
    assert record["skipped_images"] == 1


def test_strict_data_makes_a_corrupt_image_fatal(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    with pytest.raises(SystemExit) as exit_:
        main("pytorch_impl.train_san")([*SAN_TINY, "--dataset", "imagenet", "--data-dir", str(data),
                                        "--log-dir", str(tmp_path / "run"), "--strict-data"])
    assert exit_.value.code == 2
    line = one_error_line(capsys.readouterr().err, "broken.jpg: cannot decode image")
    assert line.split(" ", 1)[1] in (tmp_path / "run" / "train.log").read_text()


def test_free_flags_are_flags():
    """Every flag that may change on --resume exists in some train script."""
    dests = {a.dest for m in SCRIPTS for a in parser_of(m)._actions}
    assert FREE_ON_RESUME <= dests


def test_no_third_party_noise():
    """Importing Paddle through the project prints nothing (no "No ccache found")."""
    done = subprocess.run([sys.executable, "-c", "import paddle_impl.train_upanets"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == ""


def test_threads_default_to_every_core(monkeypatch):
    """--threads sets the framework's CPU threads; by default OMP_NUM_THREADS when the user
    set it, else every core (Paddle alone would use one)."""
    import torch
    import common
    before = torch.get_num_threads()
    calls = []
    for framework in ("pytorch", "paddle", "gluon"):
        monkeypatch.setattr(importlib.import_module(f"{framework}_impl"), "set_threads",
                            lambda n, fw=framework: calls.append((fw, n)))
    args = argparse.Namespace(threads=None)
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(common, "USER_OMP_THREADS", None)
    assert [runs.use_threads(args, fw) for fw in ("pytorch", "paddle", "gluon")] == [cores] * 3
    monkeypatch.setattr(common, "USER_OMP_THREADS", "3")
    assert runs.use_threads(args, "paddle") == 3
    assert runs.use_threads(argparse.Namespace(threads=5), "gluon") == 5
    assert calls == [("pytorch", cores), ("paddle", cores), ("gluon", cores), ("paddle", 3), ("gluon", 5)]
    monkeypatch.undo()
    import paddle
    import paddle_impl
    openmp = paddle_impl.omp_runtime(paddle)
    try:  # the real calls, where the count can be read back
        importlib.import_module("pytorch_impl").set_threads(1)
        assert torch.get_num_threads() == 1
        for n in (1, 2):
            paddle_impl.set_threads(n)
            assert openmp.omp_get_max_threads() == n
    finally:
        torch.set_num_threads(before)
        paddle_impl.set_threads(cores)


def test_a_child_script_gets_the_users_thread_count(monkeypatch):
    """Importing Paddle writes OMP_NUM_THREADS=1 into this process's environment; a train
    script started from it (the main job) must not inherit that as the user's choice."""
    import common
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Paddle's import leaves
    monkeypatch.setattr(common, "USER_OMP_THREADS", None)
    assert "OMP_NUM_THREADS" not in runs.child_environment()
    monkeypatch.setattr(common, "USER_OMP_THREADS", "3")
    assert runs.child_environment(A="b")["OMP_NUM_THREADS"] == "3"
