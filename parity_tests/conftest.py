"""Fixtures shared by the parity tests of several ports of one model."""
import json
import subprocess
import sys

import numpy as np
import pytest

# the Paddle AlexNet-SimAM's CIFAR-10 run: the test images whose logits are computed exactly
CIFAR10_EXACT_COUNT = 64


@pytest.fixture(scope="session")
def paddle_cifar10_run(cifar10_mini, tmp_path_factory):
    """The Paddle script trains AlexNet-SimAM for a short epoch on real CIFAR-10 images, once
    for every port's test: (the float32 Paddle model with the weights it wrote, the 509 test
    images, its ``native_logits`` of them, exact on the first ``CIFAR10_EXACT_COUNT``)."""
    from common.checkpoint import load_pdparams
    from parity_tests.test_alexnet import cifar_test_images, native_logits, numpy_state, paddle_model
    run = tmp_path_factory.mktemp("paddle-alexnet-cifar10")
    cmd = [sys.executable, "-m", "paddle_impl.train_alexnet", "--model", "alexnet_simam",
           "--dataset", "cifar10", "--data-dir", str(cifar10_mini), "--epochs", "1",
           "--batch-size", "32", "--max-batches", "4", "--workers", "1", "--log-dir", str(run)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["train_loss"])

    paddle_net = paddle_model("alexnet_simam")
    paddle_net.set_state_dict(load_pdparams(run / "model-last.pdparams"))
    assert not np.array_equal(numpy_state(paddle_net)["features.0.weight"],
                              numpy_state(paddle_model("alexnet_simam"))["features.0.weight"])
    images = cifar_test_images(cifar10_mini)
    assert len(images) == 509
    return paddle_net, images, native_logits(paddle_net, "alexnet_simam", images, CIFAR10_EXACT_COUNT)
