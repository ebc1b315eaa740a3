"""The real case: a reduced SAN trained briefly on real CIFAR-10 images (cifar10-mini) by
pytorch_impl.train_san, its model-last.pth converted to Paddle through common/convert.py;
both frameworks classify 32 real test images in float32 with the same logits and argmax."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import torch

from common import transforms
from common.convert import match_state
from common.data import get_dataset
from common.formats import convert_state
from paddle_impl import create_model as create_paddle
from parity_tests.tolerances import assert_close, assert_same_argmax
from pytorch_impl import create_model as create_torch

ROOT = Path(__file__).resolve().parents[1]
REDUCED = dict(num_classes=10, layers=(1, 1, 1, 1, 1), kernels=(3, 3, 3, 3, 1))


def test_trained_on_cifar10_mini_same_predictions_in_paddle(cifar10_mini, tmp_path):
    run_dir = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "pytorch_impl.train_san", "--model", "san10_patchwise",
                    "--dataset", "cifar10", "--data-dir", str(cifar10_mini), "--layers", "1", "1",
                    "1", "1", "1", "--batch-size", "8", "--max-batches", "40", "--epochs", "1",
                    "--lr", "0.02", "--workers", "0", "--log-dir", str(run_dir)],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    state = {k: v.numpy() for k, v in
             torch.load(run_dir / "model-last.pth", weights_only=True).items()}
    t_model = create_torch("san10_patchwise", **REDUCED)
    t_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    p_model = create_paddle("san10_patchwise", **REDUCED)
    shapes = {k: tuple(v.shape) for k, v in p_model.state_dict().items()}
    converted = convert_state(state, "pytorch", "paddle", shapes)
    match_state(converted, shapes)
    p_model.set_state_dict(converted)
    t_model.eval(), p_model.eval()

    test = get_dataset("cifar10", "test", cifar10_mini)
    train = get_dataset("cifar10", "train", cifar10_mini)
    normalise = transforms.plain(train.mean, train.std)
    images = np.stack([normalise(test.images[i], None) for i in range(32)])
    with torch.no_grad():
        expected = t_model(torch.from_numpy(images)).numpy()
    actual = p_model(paddle.to_tensor(images)).numpy()
    assert np.abs(expected).max() > 0.1 and np.std(expected.argmax(1)) > 0  # a trained, non-constant model
    assert_close(actual, expected, np.float32, "logits on real CIFAR-10 test images")
    assert_same_argmax(actual, expected, "CIFAR-10 test predictions")
