"""Fine-tuning and model cards in every train script.

* ``--initial-checkpoint`` (``--init-from`` in the Residual Attention scripts): a script
  started from a checkpoint written natively by another framework hands fit (the epoch loop)
  exactly the checkpoint's tensors; with ``--num-classes`` other than the checkpoint's, every
  tensor but the classifier's, the classifier with the new number of rows and the recipe's
  initialisation; with ``--resume`` the checkpoint is not read; a checkpoint that does not
  fit, or fewer classes than the dataset's, end the run with one line.
* ``model.json``: every run folder has its model card (model, framework, constructor
  arguments, input side, the normalisation the run applies, class names, recipe), written
  before fit starts, and ``load_model(model-best.*)`` rebuilds the trained model from it in
  its framework and in another one, with the same logits.

What a script hands fit is read by running it with :func:`common.fit.fit` replaced by a
function that saves the session's weights and stops, in a subprocess (the Gluon scripts log
through mxboard, whose protobufs clash with tensorboard's; and the framework's random state
and threads of this process stay as they are).
"""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.convert import to_canonical
from common.data import get_dataset
from common.formats import EXTENSION, format_of, names_of, read_state
from common.specs import MODEL_CARD
from common.transforms import plain
from parity_tests.tolerances import assert_close

ROOT = Path(__file__).resolve().parents[1]
# per family: its recipe module, a model small enough, and the flags of the cheapest run
FAMILIES = {
    "attention": ("attention_recipe", "attention56_cifar", {},
                  ["--epochs", "1", "--max-batches", "1", "--batch-size", "4", "--workers", "0"]),
    "alexnet": ("alexnet_recipe", "alexnet", {},
                ["--model", "alexnet", "--epochs", "1", "--max-batches", "1", "--batch-size", "8",
                 "--workers", "0", "--grid", "2"]),
    "upanets": ("upanets_recipe", "upanets16", {"img_size": 32, "blocks": 1},
                ["--epochs", "1", "--max-batches", "1", "--batch-size", "4", "--workers", "0"]),
    "san": ("san_recipe", "san10_pairwise", {"layers": [1] * 5, "kernels": [3, 3, 3, 3, 1]},
            ["--layers", "1", "1", "1", "1", "1", "--epochs", "1", "--max-batches", "1",
             "--batch-size", "4", "--workers", "0"]),
}
CLASSIFIER = {"attention": "output.", "alexnet": "classifier.6.", "upanets": "linear.", "san": "fc."}

# runs a train script until fit receives the session, saves the session's weights, stops
STOP_AT_START = """
import sys
from common import {recipe} as recipe
def save_and_stop(args, log, session, *rest, **kwargs):  # in place of common.fit.fit
    session.save_weights(sys.argv[1])
    raise SystemExit(0)
recipe.fit = save_and_stop
from {framework}_impl.train_{family} import main
main(sys.argv[2:])
"""


def script(framework, family, *argv, code=None):
    """Run ``{framework}_impl.train_{family}`` (or ``code`` with ``argv``) in one thread;
    (exit status, stdout + stderr)."""
    command = [sys.executable, "-c", code, *argv] if code else \
        [sys.executable, "-m", f"{framework}_impl.train_{family}", *argv]
    done = subprocess.run(command, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def canonical(path):
    """A checkpoint's tensors under PyTorch's names and layouts, whichever format."""
    fmt = format_of(path)
    return to_canonical(read_state(path, fmt), names_of(fmt))


def start_of_run(framework, family, run_dir, *flags):
    """The weights the train script hands fit (before its first step), canonical, and the
    run's log."""
    recipe, _, _, tiny = FAMILIES[family]
    saved = run_dir / f"start{EXTENSION[framework]}"
    code, output = script(framework, family, str(saved), *tiny, "--log-dir", str(run_dir), *flags,
                          code=STOP_AT_START.format(recipe=recipe, framework=framework, family=family))
    assert code == 0, output[-3000:]
    return canonical(saved), (run_dir / "train.log").read_text()


def random_checkpoint(framework, family, path):
    """The family's small model for the 10 digits built in ``framework`` with every tensor
    drawn uniformly from [0.5, 1.5) (no initialisation draws that everywhere), saved by the
    framework itself at ``path``."""
    _, name, kwargs, _ = FAMILIES[family]
    kwargs = {**kwargs, "num_classes": 10}
    rng = np.random.default_rng(sorted(FAMILIES).index(family))
    draw = lambda shape: rng.uniform(0.5, 1.5, tuple(shape)).astype(np.float32)  # noqa: E731
    if framework == "pytorch":
        import torch
        from pytorch_impl import create_model
        state = create_model(name, **kwargs).state_dict()
        torch.save({k: torch.from_numpy(draw(v.shape)) if v.is_floating_point() else v
                    for k, v in state.items()}, path)
    elif framework == "paddle":
        import paddle
        from paddle_impl import create_model
        state = create_model(name, **kwargs).state_dict()
        paddle.save({k: paddle.to_tensor(draw(v.shape)) for k, v in state.items()}, str(path))
    else:
        import mxnet as mx
        from gluon_impl import create_model
        net = create_model(name, **kwargs)
        net.initialize()
        for p in net.collect_params().values():
            p.set_data(mx.nd.array(draw(p.shape)))
        net.save_parameters(str(path))
    return path


def assert_starts_from(start, checkpoint, classifier, classes=None):
    """Every tensor of ``start`` is the checkpoint's, bit for bit; with ``classes``, but
    those of the ``classifier`` module, which has ``classes`` rows instead."""
    assert start.keys() == checkpoint.keys()
    for key, value in checkpoint.items():
        if classes is not None and key.startswith(classifier):
            assert start[key].shape == (classes, *value.shape[1:]), key
            assert not np.array_equal(start[key][:len(value)], value), f"{key} was loaded"
        else:
            assert start[key].dtype == value.dtype and np.array_equal(start[key], value), key


def card(run_dir):
    return json.loads((run_dir / MODEL_CARD).read_text())


IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


# --------------------------------------------------------------------------- fine-tuning
# (script's framework, family, checkpoint's framework): every family, each checkpoint
# written by another framework than the script's; the same classes, then 12 classes
SAME_CLASSES = [("gluon", "attention", "pytorch"), ("pytorch", "alexnet", "paddle"),
                ("gluon", "upanets", "paddle"), ("paddle", "san", "pytorch"),
                ("paddle", "attention", "gluon"), ("gluon", "alexnet", "paddle")]
OTHER_CLASSES = [("pytorch", "attention", "gluon"), ("paddle", "alexnet", "pytorch"),
                 ("pytorch", "upanets", "gluon"), ("pytorch", "san", "paddle"),
                 ("gluon", "san", "pytorch")]


@pytest.mark.parametrize("framework,family,written_by", SAME_CLASSES)
def test_the_run_starts_from_another_frameworks_checkpoint(framework, family, written_by, tmp_path):
    path = random_checkpoint(written_by, family, tmp_path / f"w{EXTENSION[written_by]}")
    flag = "--init-from" if family == "attention" else "--initial-checkpoint"  # the alias too
    start, log = start_of_run(framework, family, tmp_path / "run", flag, str(path))
    assert_starts_from(start, canonical(path), CLASSIFIER[family])
    assert f"started from {path}" in log


@pytest.fixture(scope="module")
def attention_plain(tmp_path_factory):
    """What the PyTorch Residual Attention script hands fit for 12 classes without a
    checkpoint (the recipe's MSRAPrelu, drawn from a seeded generator), and its run folder."""
    run_dir = tmp_path_factory.mktemp("attention-plain")
    return start_of_run("pytorch", "attention", run_dir, "--num-classes", "12")[0], run_dir


@pytest.mark.parametrize("framework,family,written_by", OTHER_CLASSES)
def test_other_classes_reinitialise_the_classifier_alone(framework, family, written_by, tmp_path,
                                                         request):
    path = random_checkpoint(written_by, family, tmp_path / f"w{EXTENSION[written_by]}")
    start, log = start_of_run(framework, family, tmp_path / "run", "--initial-checkpoint",
                              str(path), "--num-classes", "12")
    assert_starts_from(start, canonical(path), CLASSIFIER[family], classes=12)
    assert "re-initialised for 12 classes" in log
    assert card(tmp_path / "run")["kwargs"]["num_classes"] == 12
    if family == "attention":
        # the classifier has the recipe's initialisation: that of the same run without a checkpoint
        plain_start, _ = request.getfixturevalue("attention_plain")
        for key in ("output.weight", "output.bias"):
            assert np.array_equal(start[key], plain_start[key]), key
        assert not np.array_equal(plain_start["features.0.weight"], start["features.0.weight"])


def test_resume_does_not_read_the_initial_checkpoint(tmp_path):
    """A resumed run continues from its own weights: the (here missing) initial checkpoint
    is not read, and the log says so."""
    run_dir, missing = tmp_path / "run", tmp_path / "missing.pth"
    tiny = FAMILIES["upanets"][3]
    code, output = script("pytorch", "upanets", *tiny, "--log-dir", str(run_dir))
    assert code == 0, output[-3000:]
    code, output = script("pytorch", "upanets", *tiny, "--epochs", "2", "--log-dir", str(run_dir),
                          "--resume", "--allow-changes", "--initial-checkpoint", str(missing))
    assert code == 0, output[-3000:]
    log = (run_dir / "train.log").read_text()
    assert f"--initial-checkpoint {missing} is not read" in log and "resumed after epoch 0" in log
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [0, 1]


def test_bad_fine_tuning_fails_in_one_line(tmp_path, capsys, refusal):
    from pytorch_impl.train_upanets import main
    tiny = FAMILIES["upanets"][3]
    with pytest.raises(SystemExit) as exit_:
        main([*tiny, "--log-dir", str(tmp_path / "few"), "--num-classes", "7"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err == "error: --num-classes 7 is smaller than the 10 classes of digits\n"
    with pytest.raises(SystemExit) as exit_:
        main([*tiny, "--num-classes", "0"])
    assert exit_.value.code == 2 and "--num-classes must be at least 1" in capsys.readouterr().err
    # another model's checkpoint (an AlexNet written by Paddle)
    other = random_checkpoint("paddle", "alexnet", tmp_path / "alexnet.pdparams")
    message = refusal(main, [*tiny, "--log-dir", str(tmp_path / "other"), "--initial-checkpoint",
                             str(other)])
    assert message.startswith(f"error: --initial-checkpoint: the checkpoint {other} does not match "
                              "the model: missing (")
    assert "\n" not in message and len(message) <= 430


# --------------------------------------------------------------------------- model cards
@pytest.mark.parametrize("framework,family,kwargs,side,stats", [
    ("pytorch", "attention", {"num_classes": 12}, 32, IMAGENET),
    ("paddle", "alexnet", {"num_classes": 10}, 128, IMAGENET),
    ("pytorch", "san", {"num_classes": 10, "layers": [1] * 5, "kernels": [3, 3, 3, 3, 1]}, 32, None),
])
def test_every_family_writes_its_model_card_before_fit(framework, family, kwargs, side, stats, tmp_path,
                                                       request):
    """The card is there when fit starts; its normalisation is the recipe's: ImageNet's for
    the Residual Attention Network and AlexNet, the training split's own for SAN at 32x32
    (UPANets': below)."""
    if family == "attention":
        run_dir = request.getfixturevalue("attention_plain")[1]
    else:
        run_dir = tmp_path
        start_of_run(framework, family, run_dir)
    written = card(run_dir)
    digits = get_dataset("digits", "train")
    assert (written["model"], written["framework"], written["kwargs"], written["input_size"],
            written["classes"], written["recipe"]) == \
        (FAMILIES[family][1], framework, kwargs, side, digits.classes, f"{framework}_impl.train_{family}")
    mean, std = stats or (digits.mean, digits.std)
    assert_close(written["mean"], mean, np.float32, "card mean")
    assert_close(written["std"], std, np.float32, "card std")


@pytest.mark.parametrize("framework,other", [("pytorch", "gluon"), ("paddle", "pytorch"),
                                             ("gluon", "paddle")])
def test_load_model_rebuilds_the_trained_model_from_its_card(framework, other, tmp_path):
    """A tiny UPANets run (12 classes, one step), then ``load_model(model-best.*)`` in its
    framework and in another: the card's normalisation of a few test images gives the same
    12 logits in both."""
    code, output = script(framework, "upanets", *FAMILIES["upanets"][3], "--num-classes", "12",
                          "--log-dir", str(tmp_path))
    assert code == 0, output[-3000:]
    written = card(tmp_path)
    digits = get_dataset("digits", "train")
    assert written["kwargs"] == {"num_classes": 12, "img_size": 32, "blocks": 1}
    assert written["input_size"] == 32 and written["recipe"] == f"{framework}_impl.train_upanets"
    assert_close(written["mean"], digits.mean, np.float32, "card mean")  # the recipe's: the split's own
    test = get_dataset("digits", "test")
    normalise = plain(written["mean"], written["std"])
    images = np.stack([normalise(image, None) for image in test.images[:4]])
    logits = {}
    for fw in (framework, other):
        model = importlib.import_module(f"{fw}_impl").load_model(str(tmp_path / f"model-best{EXTENSION[framework]}"))
        logits[fw] = importlib.import_module(f"{fw}_impl.weights").predict(model, images)
    assert logits[framework].shape == (4, 12)
    assert_close(logits[other], logits[framework], np.float32, f"{other} from a {framework} run")
