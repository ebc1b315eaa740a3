"""The depths beyond 56/92 (and Attention-92 for ImageNet): each builds in both frameworks
with the same parameter names and count. The CIFAR variants run forward in both and agree in
float32; the ImageNet ones run forward at 224x224 on torch's meta device (shapes only: a
full-size Attention-452 is 176M parameters)."""
import mxnet as mx
import numpy as np
import pytest
import torch

from common.convert import to_canonical
from gluon_impl import create_model as create_gluon
from parity_tests.test_attention import gluon_to_torch, perturb_norms
from parity_tests.tolerances import assert_close, assert_same_argmax
from pytorch_impl import create_model as create_torch

EXPECTED = {  # learnable parameters (scripts/count_attention_params.py), 10 / 1000 classes
    "attention128_cifar": 13_905_770, "attention164_cifar": 17_124_970,
    "attention236_cifar": 23_563_370, "attention452_cifar": 43_783_274,
    "attention92": 52_466_344, "attention128": 57_467_048, "attention164": 70_295_208,
    "attention236": 95_951_528, "attention452": 176_499_368,
}


def gluon_shapes(net):
    return {k: p.shape for k, p in net._collect_params_with_prefix().items()}


def learnable(net):
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")


@pytest.mark.parametrize("name", [n for n in EXPECTED if n.endswith("_cifar")])
def test_cifar_depths_build_count_and_agree(name):
    net = create_gluon(name, num_classes=10)
    mx.random.seed(0)
    net.initialize(mx.init.MSRAPrelu())
    perturb_norms(net, 0)
    model = create_torch(name, num_classes=10)
    assert learnable(net) == EXPECTED[name]
    assert sum(p.numel() for p in model.parameters()) == EXPECTED[name]
    gluon_to_torch(net, model)
    x = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    expected = net(mx.nd.array(x)).asnumpy()
    model.eval()
    with torch.no_grad():
        actual = model(torch.from_numpy(x))
    assert_close(actual, expected, np.float32, f"{name} eval logits")
    assert_same_argmax(actual, expected, name)


@pytest.mark.parametrize("name", [n for n in EXPECTED if not n.endswith("_cifar")])
def test_imagenet_depths_build_count_and_shapes(name):
    net = create_gluon(name)
    with torch.device("meta"):
        model = create_torch(name)
        logits = model(torch.empty(2, 3, 224, 224))
    assert tuple(logits.shape) == (2, 1000)
    canonical = to_canonical({k: np.empty(0) for k in gluon_shapes(net)}, "gluon")
    assert set(canonical) == set(model.state_dict())
    assert learnable(net) == EXPECTED[name]
    assert sum(p.numel() for p in model.parameters()) == EXPECTED[name]
