"""Fixtures shared by the parity tests of several ports of one model."""
import json
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
    them, in float32 and (the ports' reference) in float64. Returns ``(checkpoint, images,
    gluon_logits, exact_logits, labels)``."""
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
    nets = []
    for dtype in ("float32", "float64"):
        net = create_gluon("attention56_cifar", num_classes=10)
        net.load_parameters(str(checkpoint))
        net.cast(dtype)
        net.hybridize()
        nets.append(net)
    images, logits, exact, labels = [], [], [], []
    for x, y in loader.epoch(0):
        images.append(x)
        logits.append(nets[0](mx.nd.array(x)).asnumpy())
        exact.append(nets[1](mx.nd.array(x, dtype="float64")).asnumpy())
        labels.append(y)
    return (checkpoint, np.concatenate(images), np.concatenate(logits), np.concatenate(exact),
            np.concatenate(labels))


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


def both_ways(request, monkeypatch, kernels, label, names):
    """A framework's fused C++ operators (``kernels``, a ``*_impl/kernels`` module), as where
    a C++ compiler is present, or its composed operations, as elsewhere, by ``request.param``;
    fused where ``names`` did not build is a failure with a compiler, a skip without."""
    from common.toolchain import cxx_compiler
    if request.param == "composed":
        monkeypatch.setattr(kernels, "load", lambda name: None)
    elif not all(kernels.load(name) for name in names):
        assert cxx_compiler() is None, f"a C++ compiler is here, but {label}'s kernels did not build"
        pytest.skip(f"no C++ compiler here: {label}'s fused kernels cannot be built")
    return request.param


@pytest.fixture(params=["fused", "composed"])
def paddle_kernels(request, monkeypatch):
    """Paddle's operators both ways (SimAM, SAN's, batch-norm inference)."""
    from paddle_impl import kernels
    return both_ways(request, monkeypatch, kernels, "Paddle", ("simam", "san"))


@pytest.fixture(params=["fused", "composed"])
def gluon_kernels(request, monkeypatch):
    """MXNet's layer norm and up-sampling both ways."""
    from gluon_impl import kernels
    return both_ways(request, monkeypatch, kernels, "MXNet", ("layer_norm", "resize"))
