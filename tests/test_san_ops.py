"""SAN's operators (pytorch_impl.san_ops) against a loop-by-loop reference written from the
operator definitions (the reference's CUDA kernels), values and gradients, in float64, on the
CPU and, where there is one, on a CUDA device."""
import itertools

import numpy as np
import pytest
import torch

from parity_tests.tolerances import TOLERANCES, assert_close
from pytorch_impl.san_ops import aggregation, output_size, subtraction, subtraction2

# (kernel, stride, dilation, padding, height, width): strides 1 and 2, dilation, odd sizes,
# the SAN padding dilation*(k-1)//2 and a smaller one
GEOMETRIES = [(3, 1, 1, 1, 5, 5), (3, 2, 1, 1, 7, 5), (3, 1, 2, 2, 6, 7), (5, 2, 2, 4, 7, 8),
              (3, 2, 1, 0, 5, 6)]
CASES = list(itertools.product(GEOMETRIES, (0, 1)))
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"))]
#: how far two backward passes of the same input may differ (gradcheck's ``nondet_tol``): on
#: CUDA, reflection padding's backward adds the reflected border with atomics, in an order
#: that varies between runs (float64 round-off; deterministic mode refuses that kernel)
NONDET_TOL = {"cpu": 0.0, "cuda": TOLERANCES[np.dtype(np.float64)][0]}


def _source(i, size, pad_mode):
    """Index of the input read at padded coordinate i (None: a zero from the padding)."""
    if 0 <= i < size:
        return i
    if pad_mode == 0:
        return None
    return -i if i < 0 else 2 * (size - 1) - i


def loop_aggregation(x, w, k, s, p, d, pad_mode):
    n, c, h, wd = x.shape
    c_w = w.shape[1]
    oh, ow = output_size(h, k, s, p, d), output_size(wd, k, s, p, d)
    out = np.zeros((n, c, oh, ow))
    for b, ch, y, xo, kh, kw in itertools.product(range(n), range(c), range(oh), range(ow),
                                                   range(k), range(k)):
        i = _source(y * s - p + kh * d, h, pad_mode)
        j = _source(xo * s - p + kw * d, wd, pad_mode)
        if i is not None and j is not None:
            out[b, ch, y, xo] += w[b, ch % c_w, kh * k + kw, y * ow + xo] * x[b, ch, i, j]
    return out


def loop_subtraction2(x1, x2, k, s, p, d, pad_mode):
    n, c, h, wd = x1.shape
    oh, ow = output_size(h, k, s, p, d), output_size(wd, k, s, p, d)
    out = np.zeros((n, c, k * k, oh * ow))
    for b, ch, y, xo, kh, kw in itertools.product(range(n), range(c), range(oh), range(ow),
                                                   range(k), range(k)):
        i = _source(y * s - p + kh * d, h, pad_mode)
        j = _source(xo * s - p + kw * d, wd, pad_mode)
        other = x2[b, ch, i, j] if i is not None and j is not None else 0.0
        out[b, ch, kh * k + kw, y * ow + xo] = x1[b, ch, y * s, xo * s] - other
    return out


def _inputs(geometry, seed, c=4, c_w=2):
    k, s, d, p, h, w = geometry
    rng = np.random.default_rng(seed)
    oh, ow = output_size(h, k, s, p, d), output_size(w, k, s, p, d)
    x = rng.standard_normal((2, c, h, w))
    x2 = rng.standard_normal((2, c, h, w))
    weight = rng.standard_normal((2, c_w, k * k, oh * ow))
    return x, x2, weight


def _t(a, device="cpu"):
    return torch.tensor(a, dtype=torch.float64, device=device, requires_grad=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry,pad_mode", CASES)
def test_aggregation_values_and_gradients(geometry, pad_mode, device):
    k, s, d, p, _, _ = geometry
    x, _, w = _inputs(geometry, 1)
    xt, wt = _t(x, device), _t(w, device)
    y = aggregation(xt, wt, k, s, p, d, pad_mode)
    assert_close(y, loop_aggregation(x, w, k, s, p, d, pad_mode), np.float64, "aggregation")
    # the forward equals the loop reference, so gradcheck's finite differences of it check
    # the hand-written backward
    assert torch.autograd.gradcheck(lambda a, b: aggregation(a, b, k, s, p, d, pad_mode), (xt, wt),
                                    fast_mode=True, nondet_tol=NONDET_TOL[device])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry,pad_mode", CASES)
def test_subtraction2_values_and_gradients(geometry, pad_mode, device):
    k, s, d, p, _, _ = geometry
    x1, x2, _ = _inputs(geometry, 2)
    a, b = _t(x1, device), _t(x2, device)
    y = subtraction2(a, b, k, s, p, d, pad_mode)
    assert_close(y, loop_subtraction2(x1, x2, k, s, p, d, pad_mode), np.float64, "subtraction2")
    assert torch.autograd.gradcheck(lambda u, v: subtraction2(u, v, k, s, p, d, pad_mode), (a, b),
                                    fast_mode=True, nondet_tol=NONDET_TOL[device])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry,pad_mode", CASES)
def test_subtraction_values_and_gradients(geometry, pad_mode, device):
    k, s, d, p, _, _ = geometry
    x, _, _ = _inputs(geometry, 3)
    xt = _t(x, device)
    y = subtraction(xt, k, s, p, d, pad_mode)
    assert_close(y, loop_subtraction2(x, x, k, s, p, d, pad_mode), np.float64, "subtraction")
    assert torch.autograd.gradcheck(lambda u: subtraction(u, k, s, p, d, pad_mode), (xt,),
                                    fast_mode=True, nondet_tol=NONDET_TOL[device])


def test_aggregation_shares_weight_channels_interleaved():
    """Input channel c uses weight channel c mod C_w: with C_w = 2, zeroing weight channel 1
    zeroes the outputs of channels 1 and 3 only."""
    x, _, w = _inputs(GEOMETRIES[0], 4)
    w[:, 1] = 0
    y = aggregation(torch.tensor(x), torch.tensor(w), 3, 1, 1, 1, 1).numpy()
    assert np.abs(y[:, [1, 3]]).max() == 0
    assert np.abs(y[:, [0, 2]]).max() > 0.1


def test_bad_shapes_raise_clear_errors():
    x = torch.zeros(1, 4, 3, 3)
    with pytest.raises(ValueError, match="reflection padding 3"):
        subtraction(x, 7, 1, 3, 1, 1)
    with pytest.raises(ValueError, match="does not fit"):
        aggregation(x, torch.zeros(1, 3, 9, 9), 3, 1, 1, 1, 1)
