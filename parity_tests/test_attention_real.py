"""The real case: the native Gluon script trains Attention-56 (CIFAR) on the real CIFAR-10
subset for one short epoch; its ``model-best.params``, converted through common/convert.py,
gives the PyTorch port the same prediction on every one of the 509 test images (normalised as
the recipe tests them), the same accuracy, and logits equal within the float32 tolerance."""
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import torch

from common import attention_recipe
from common.checkpoint import load_gluon_params
from common.convert import match_state
from common.data import get_dataset
from common.formats import convert_state
from common.loader import BatchLoader
from gluon_impl import create_model as create_gluon
from parity_tests.tolerances import assert_close, assert_same_argmax
from pytorch_impl import create_model as create_torch

ROOT = Path(__file__).resolve().parents[1]


def test_gluon_trained_checkpoint_same_predictions_in_pytorch(cifar10_mini, tmp_path):
    run_dir = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "gluon_impl.train_attention", "--model", "attention56_cifar",
                    "--dataset", "cifar10", "--data-dir", str(cifar10_mini), "--epochs", "1",
                    "--max-batches", "6", "--batch-size", "16", "--workers", "0", "--lr", "0.05",
                    "--mix-up", "1", "--epsilon", "0.1", "--log-dir", str(run_dir)],
                   cwd=ROOT, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    checkpoint = run_dir / "model-best.params"

    test = get_dataset("cifar10", "test", cifar10_mini)
    assert len(test) == 509
    test_transform = attention_recipe.recipe_transforms()[1]
    loader = BatchLoader(test, 128, test_transform(test.mean, test.std), workers=0)

    net = create_gluon("attention56_cifar", num_classes=10)
    net.load_parameters(str(checkpoint))
    net.hybridize()
    model = create_torch("attention56_cifar", num_classes=10)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = convert_state(load_gluon_params(checkpoint), "gluon", "pytorch", shapes)
    match_state(state, shapes, what=str(checkpoint))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    model.eval()

    gluon_logits, torch_logits, labels = [], [], []
    with torch.no_grad():
        for x, y in loader.epoch(0):
            gluon_logits.append(net(mx.nd.array(x)).asnumpy())
            torch_logits.append(model(torch.from_numpy(x)).numpy())
            labels.append(y)
    gluon_logits, torch_logits = np.concatenate(gluon_logits), np.concatenate(torch_logits)
    labels = np.concatenate(labels)
    assert len(labels) == 509
    assert_same_argmax(torch_logits, gluon_logits, "509 CIFAR-10 test predictions")
    assert (torch_logits.argmax(1) == labels).mean() == (gluon_logits.argmax(1) == labels).mean()
    assert_close(torch_logits, gluon_logits, np.float32, "509 CIFAR-10 test logits")
