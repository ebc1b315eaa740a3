"""Gluon UPANets and SAN trained hybridized (``Placement.module(model, hybridize=True)``, as
``gluon_impl.train_upanets`` and ``train_san`` do; SAN reduced to one block a stage): after
two steps, every running statistic equals the imperative steps' (whose BatchNorms update the
running variance with torch's unbiased rule) within the float32 tolerance, on one context
and (UPANets) with the batch split over two. The steps
run at learning rate 0, so that both see the same weights: at this batch of 8, the float32
round-off of the two graphs' gradients (1e-5 relative) grows to hundreds of tolerances in the
weights within two steps at rate 0.1. The same hybridized steps without
:class:`gluon_impl.layers.TorchRunningVariance` leave MXNet's biased running variance, which
the tolerance tells apart."""
import argparse
import contextlib

import mxnet as mx
import numpy as np
import pytest

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchsgd')
from gluon_impl import create_model
from gluon_impl.layers import TorchRunningVariance
from gluon_impl.session import Placement
from parity_tests.tolerances import assert_close

BATCH = 8
MODELS = {"upanets16": {}, "san10_pairwise": dict(layers=(1,) * 5, kernels=(3, 3, 3, 3, 1))}


def _two_steps(ctx, hybridize, model="upanets16"):
    """Every running statistic on every context after two training steps, by name."""
    mx.random.seed(0)
    net = create_model(model, **MODELS[model])
    net.initialize(mx.init.Xavier())
    placement = Placement(argparse.Namespace(ctx=ctx, amp=False, kvstore="device"))
    net = placement.module(net, hybridize=hybridize)
    trainer = placement.trainer(net.collect_params(), "torchsgd",
                                {"learning_rate": 0.1, "momentum": 0.9, "wd": 5e-4})
    rng = np.random.default_rng(1)
    for _ in range(2):
        images = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
        labels = rng.integers(0, 10, BATCH).astype(np.float32)
        placement.train_step(net, trainer, images, labels, 0.0,
                             mx.gluon.loss.SoftmaxCrossEntropyLoss())
    return {name: [d.asnumpy() for d in p.list_data()]
            for name, p in net._collect_params_with_prefix().items() if "running" in name}


@pytest.mark.parametrize("model, ctx", [("upanets16", "cpu"), ("upanets16", "cpu0,cpu1"),
                                        ("san10_pairwise", "cpu")])
def test_hybridized_steps_equal_imperative_ones(model, ctx):
    expected, actual = (_two_steps(ctx, hybridize, model) for hybridize in (False, True))
    assert expected.keys() == actual.keys()
    last = [name for name in expected if name.endswith("running_var")][-1]
    assert np.abs(expected[last][0] - 1).max() > 0.1  # the steps moved them
    for name, values in expected.items():
        assert len(actual[name]) == len(values) == len(ctx.split(","))
        for i, (a, e) in enumerate(zip(actual[name], values)):
            assert_close(a, e, np.float32, f"{name} on context {i}")


def test_without_the_correction_the_running_variance_is_mxnets(monkeypatch):
    expected = _two_steps("cpu", hybridize=False)
    monkeypatch.setattr(TorchRunningVariance, "step", lambda self, rows: contextlib.nullcontext())
    actual = _two_steps("cpu", hybridize=True)
    with pytest.raises(AssertionError, match="tolerances off"):
        assert_close(actual["bn.running_var"][0], expected["bn.running_var"][0], np.float32)
