"""The depths beyond 56/92 (and Attention-92 for ImageNet): each builds in both frameworks
with the same parameter names and the original code's count (test_paper_tables.py). The CIFAR variants run forward in both and agree in
float32; the ImageNet ones run forward at 224x224 on torch's meta device (shapes only: a
full-size Attention-452 is 176M parameters)."""
import mxnet as mx
import numpy as np
import pytest
import torch

from common.convert import to_canonical
from gluon_impl import create_model as create_gluon
from parity_tests.test_attention import gluon_to_torch, perturb_norms
from parity_tests.test_paper_tables import original_count
from parity_tests.tolerances import assert_close, assert_same_argmax
from pytorch_impl import create_model as create_torch
from scripts.count_attention_params import gluon_learnable

DEPTHS = [f"attention{d}{v}" for d in (128, 164, 236, 452) for v in ("_cifar", "")] + ["attention92"]


def gluon_shapes(net):
    return {k: p.shape for k, p in net._collect_params_with_prefix().items()}


@pytest.mark.parametrize("name", [n for n in DEPTHS if n.endswith("_cifar")])
def test_cifar_depths_build_count_and_agree(name):
    net = create_gluon(name, num_classes=10)
    mx.random.seed(0)
    net.initialize(mx.init.MSRAPrelu())
    perturb_norms(net, 0)
    model = create_torch(name, num_classes=10)
    assert gluon_learnable(net) == original_count(name)
    assert sum(p.numel() for p in model.parameters()) == original_count(name)
    gluon_to_torch(net, model)
    x = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    expected = net(mx.nd.array(x)).asnumpy()
    model.eval()
    with torch.no_grad():
        actual = model(torch.from_numpy(x))
    assert_close(actual, expected, np.float32, f"{name} eval logits")
    assert_same_argmax(actual, expected, name)


@pytest.mark.parametrize("name", [n for n in DEPTHS if not n.endswith("_cifar")])
def test_imagenet_depths_build_count_and_shapes(name):
    net = create_gluon(name)
    with torch.device("meta"):
        model = create_torch(name)
        logits = model(torch.empty(2, 3, 224, 224))
    assert tuple(logits.shape) == (2, 1000)
    canonical = to_canonical({k: np.empty(0) for k in gluon_shapes(net)}, "gluon")
    assert set(canonical) == set(model.state_dict())
    assert gluon_learnable(net) == original_count(name)
    assert sum(p.numel() for p in model.parameters()) == original_count(name)
