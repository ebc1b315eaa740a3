"""Fixtures shared by the parity tests of several ports."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def attention56_cifar_gluon_run(cifar10_mini, tmp_path_factory):
    """The Residual Attention Network's real case, run once for every port: the native Gluon
    script trains Attention-56 (CIFAR) on the real CIFAR-10 subset for one short epoch, and
    its ``model-best.params`` classifies the 509 test images, normalised as the recipe tests
    them. Returns ``(checkpoint, images, gluon_logits, labels)``."""
    import mxnet as mx

    from common import attention_recipe
    from common.data import get_dataset
    from common.loader import BatchLoader
    from gluon_impl import create_model as create_gluon

    run_dir = tmp_path_factory.mktemp("attention56-cifar10") / "run"
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
    images, logits, labels = [], [], []
    for x, y in loader.epoch(0):
        images.append(x)
        logits.append(net(mx.nd.array(x)).asnumpy())
        labels.append(y)
    return checkpoint, np.concatenate(images), np.concatenate(logits), np.concatenate(labels)
