"""The UPANets train scripts: run folder, metrics, exact resume, clear errors, and the real case
(PyTorch trains on CIFAR-10 images; the checkpoint converted to Paddle and Gluon predicts the
same class for every test image).

PyTorch and Paddle scripts run in this process; the Gluon script, which logs through mxboard
(its protobufs clash with tensorboard's), runs as a subprocess.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from common import checkpoint
from common.data import get_dataset
from common.fit import STATE_FILE
from common.transforms import plain
from parity_tests.tolerances import assert_close, assert_same_argmax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = ["--batch-size", "4", "--max-batches", "1", "--workers", "0"]
EXT = {"pytorch": "pth", "paddle": "pdparams", "gluon": "params"}
OPTIMIZER_EXT = {"pytorch": "pth", "paddle": "pdopt", "gluon": "params"}


def train(framework, log_dir, *flags):
    argv = [*SMOKE, "--log-dir", str(log_dir), *flags]
    if framework == "gluon":
        subprocess.run([sys.executable, "-m", "gluon_impl.train_upanets", *argv], cwd=ROOT, check=True,
                       capture_output=True)
    elif framework == "paddle":
        from paddle_impl.train_upanets import main
        main(argv)
    else:
        from pytorch_impl.train_upanets import main
        main(argv)


def read_weights(framework, path):
    if framework == "pytorch":
        import torch
        return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}
    return (checkpoint.load_pdparams if framework == "paddle" else checkpoint.load_gluon_params)(path)


def in_batches(predict, images, size=128):
    return np.concatenate([predict(images[i:i + size]) for i in range(0, len(images), size)])


@pytest.mark.parametrize("framework", ["pytorch", "paddle", "gluon"])
def test_run_folder_and_exact_resume(framework, tmp_path):
    """Two epochs in one go == one epoch (--stop-after 1), then --resume: the same weights, bit
    for bit."""
    train(framework, tmp_path / "full", "--epochs", "2", "--save-period", "1")
    train(framework, tmp_path / "split", "--epochs", "2", "--stop-after", "1")
    train(framework, tmp_path / "split", "--epochs", "2", "--resume")
    ext = EXT[framework]
    for name in (f"model-best.{ext}", f"model-last.{ext}", f"train-state.{OPTIMIZER_EXT[framework]}",
                 STATE_FILE, "metrics.jsonl", "train.log", "learning-curves.png", "args.yaml"):
        assert (tmp_path / "full" / name).exists(), name
    full = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    split = [json.loads(l) for l in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in full] == [m["epoch"] for m in split] == [0, 1]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert [m[key] for m in full] == [m[key] for m in split], key
    assert full[1]["lr"] == pytest.approx(0.05, abs=1e-15)  # cosine over two epochs from 0.1
    a = read_weights(framework, tmp_path / "full" / f"model-last.{ext}")
    b = read_weights(framework, tmp_path / "split" / f"model-last.{ext}")
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    first = read_weights(framework, tmp_path / "full" / f"model-epoch0.{ext}")
    assert any(not np.array_equal(first[k], a[k]) for k in a), "the second epoch changed nothing"


def test_clear_errors(tmp_path, capsys, refusal):
    from pytorch_impl.train_upanets import main
    for argv, message in ((["--dataset", "cifar10"], "needs --data-dir"),
                          (["--dataset", "imagenet", "--data-dir", str(tmp_path)], "invalid choice: 'imagenet'"),
                          (["--model", "upanets32", "--filters", "64"], "disagree")):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([*SMOKE, "--log-dir", str(tmp_path / "empty"), "--resume"])
    assert exit_.value.code == 2 and "holds no run to continue" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("model-last.pth", "train-state.pth"):
        (damaged / name).write_bytes(b"")
    (damaged / "train-state.json").write_text('{"epoch": 0, "best')
    assert "train-state.json is damaged" in refusal(main, [*SMOKE, "--log-dir", str(damaged), "--resume"])


def test_real_case_cifar10_mini_converted_predictions_agree(cifar10_mini, tmp_path):
    """PyTorch trains UPANets16 for one short epoch on real CIFAR-10 images; its checkpoint,
    converted to Paddle and to Gluon, predicts the same class for every test image."""
    import mxnet as mx
    import paddle
    import torch

    from common.convert import from_canonical, match_state, to_canonical
    from gluon_impl import create_model as gluon_model
    from paddle_impl import create_model as paddle_model
    from pytorch_impl import create_model as torch_model
    from pytorch_impl.train_upanets import main

    main(["--dataset", "cifar10", "--data-dir", str(cifar10_mini), "--epochs", "1",
          "--max-batches", "3", "--batch-size", "50", "--workers", "0", "--log-dir", str(tmp_path)])
    canonical = to_canonical(read_weights("pytorch", tmp_path / "model-best.pth"), "pytorch")

    test = get_dataset("cifar10", "test", cifar10_mini)
    normalise = plain(test.mean, test.std)
    images = np.stack([normalise(image, None) for image in test.images])
    assert len(images) == 509

    net = torch_model("upanets16")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in canonical.items()}, strict=True)
    net.eval()
    with torch.no_grad():
        expected = in_batches(lambda x: net(torch.from_numpy(x)).numpy(), images)

    pnet = paddle_model("upanets16")
    shapes = {k: tuple(v.shape) for k, v in pnet.state_dict().items()}
    state = from_canonical(canonical, "paddle", shapes)
    match_state(state, shapes)
    pnet.set_state_dict(state)
    pnet.eval()
    with paddle.no_grad():
        from_paddle = in_batches(lambda x: pnet(paddle.to_tensor(x)).numpy(), images)

    gnet = gluon_model("upanets16")
    shapes = {k: p.shape for k, p in gnet._collect_params_with_prefix().items()}
    state = from_canonical(canonical, "gluon", shapes)
    match_state(state, shapes)
    checkpoint.save_gluon_params(state, tmp_path / "converted.params")
    gnet.load_parameters(str(tmp_path / "converted.params"))
    gnet.hybridize()
    from_gluon = in_batches(lambda x: gnet(mx.nd.array(x)).asnumpy(), images)

    for name, logits in (("paddle", from_paddle), ("gluon", from_gluon)):
        assert_same_argmax(logits, expected, f"{name} predictions on cifar10-mini")
        assert_close(logits, expected, np.float32, f"{name} logits on cifar10-mini")
