"""SAN's operators in MXNet Gluon (gluon_impl.san_ops) against the loop-by-loop reference of
tests/test_san_ops.py, values and finite-difference gradients in float64, imperative
(NDArrays) and hybridized (Symbols inside a HybridBlock), on every geometry of the PyTorch and
Paddle operator tests."""
import itertools

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from mxnet.gluon import HybridBlock

from gluon_impl import san_ops
from parity_tests.tolerances import assert_close
from tests.test_san_ops import GEOMETRIES, _inputs, loop_aggregation, loop_subtraction2

# tests/test_san_ops.py's geometries and the odd 5x6 input of the parity test
# (parity_tests/test_san.py::test_operators_forward_and_backward)
CASES = list(itertools.product(GEOMETRIES + [(3, 1, 1, 1, 5, 6)], (0, 1)))
MODES = ("imperative", "hybridized")


class Op(HybridBlock):
    """One operator as a block; hybridized, its inputs are Symbols."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def hybrid_forward(self, F, *inputs):
        return self.fn(*inputs, *self.args, **self.kwargs)


def _op(mode, fn, *args, **kwargs):
    block = Op(fn, *args, **kwargs)
    if mode == "hybridized":
        block.hybridize()
    return block


def _nd(a):
    return mx.nd.array(a, dtype=np.float64)


def check_values_and_gradients(block, inputs, expected, what, seed=0):
    """``block(*inputs)`` equals ``expected``; and the gradient of ``sum(y * g)`` (random g),
    taken along two random directions per input, equals its central finite difference."""
    rng = np.random.default_rng(seed)
    arrays = [_nd(a) for a in inputs]
    for a in arrays:
        a.attach_grad()
    with autograd.record():
        y = block(*arrays)
        g = _nd(rng.standard_normal(y.shape))
        loss = (y * g).sum()
    loss.backward()
    assert_close(y, expected, np.float64, what)

    def objective(values):
        return float((block(*[_nd(v) for v in values]) * g).sum().asscalar())

    eps = 1e-6
    for i, (a, grad) in enumerate(zip(inputs, arrays)):
        for _ in range(2):
            v = rng.standard_normal(a.shape)
            plus = [b + eps * v if j == i else b for j, b in enumerate(inputs)]
            minus = [b - eps * v if j == i else b for j, b in enumerate(inputs)]
            numeric = (objective(plus) - objective(minus)) / (2 * eps)
            analytic = float((grad.grad.asnumpy() * v).sum())
            assert abs(numeric - analytic) <= 1e-7 * (abs(analytic) + np.abs(v).sum()), \
                (what, i, numeric, analytic)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry,pad_mode", CASES)
def test_aggregation_values_and_gradients(geometry, pad_mode, mode):
    k, s, d, p, _, _ = geometry
    x, _, w = _inputs(geometry, 1)
    block = _op(mode, san_ops.aggregation, k, s, p, d, pad_mode, weight_channels=w.shape[1])
    check_values_and_gradients(block, (x, w), loop_aggregation(x, w, k, s, p, d, pad_mode), "aggregation")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry,pad_mode", CASES)
def test_subtraction2_values_and_gradients(geometry, pad_mode, mode):
    k, s, d, p, _, _ = geometry
    x1, x2, _ = _inputs(geometry, 2)
    block = _op(mode, san_ops.subtraction2, k, s, p, d, pad_mode)
    check_values_and_gradients(block, (x1, x2), loop_subtraction2(x1, x2, k, s, p, d, pad_mode),
                               "subtraction2")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry,pad_mode", CASES)
def test_subtraction_values_and_gradients(geometry, pad_mode, mode):
    k, s, d, p, _, _ = geometry
    x, _, _ = _inputs(geometry, 3)
    block = _op(mode, san_ops.subtraction, k, s, p, d, pad_mode)
    check_values_and_gradients(block, (x,), loop_subtraction2(x, x, k, s, p, d, pad_mode), "subtraction")


def test_one_hybridized_graph_serves_every_input_size():
    """The window slices end relative to the input's end: no shape is baked into the graph."""
    block = _op("hybridized", san_ops.aggregation, 3, 1, 1, 1, 1, weight_channels=2)
    for h, w in ((5, 5), (6, 9)):
        x, _, weight = _inputs((3, 1, 1, 1, h, w), 5)
        assert_close(block(_nd(x), _nd(weight)), loop_aggregation(x, weight, 3, 1, 1, 1, 1),
                     np.float64, f"aggregation {h}x{w}")


def test_aggregation_shares_weight_channels_interleaved():
    """Input channel c uses weight channel c mod C_w: with C_w = 2, zeroing weight channel 1
    zeroes the outputs of channels 1 and 3 only."""
    x, _, w = _inputs(GEOMETRIES[0], 4)
    w[:, 1] = 0
    y = san_ops.aggregation(_nd(x), _nd(w), 3, 1, 1, 1, 1).asnumpy()
    assert np.abs(y[:, [1, 3]]).max() == 0
    assert np.abs(y[:, [0, 2]]).max() > 0.1


def test_bad_shapes_raise_clear_errors():
    x = mx.nd.zeros((1, 4, 3, 3))
    with pytest.raises(ValueError, match="reflection padding 3"):
        san_ops.subtraction(x, 7, 1, 3, 1, 1)
    with pytest.raises(ValueError, match="does not fit"):
        san_ops.aggregation(x, mx.nd.zeros((1, 3, 9, 9)), 3, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="pad_mode must be 0"):
        san_ops.subtraction(x, 3, 1, 1, 1, 2)
    with pytest.raises(ValueError, match="needs weight_channels"):
        _op("hybridized", san_ops.aggregation, 3, 1, 1, 1, 1)(x, mx.nd.zeros((1, 2, 9, 9)))
