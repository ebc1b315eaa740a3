"""SimAM alone: the Paddle layer and its PyTorch port against each other and against the
paper's formula (values written in numpy; input gradients by autograd through the formula
composed of torch ops, independent of the gradient rule both layers write out), including
channels of zero variance and inputs of large magnitude. Every case runs each layer both
ways: PyTorch's training kernels compiled by inductor and Paddle's fused C++ operator
(``paddle_impl/kernels/simam.cc``), as where a C++ compiler is present, and eagerly and
composed, as elsewhere."""
import numpy as np
import paddle
import pytest
import torch

from paddle_impl.models.alexnet import SimAM as PaddleSimAM
from parity_tests.tolerances import assert_close
from pytorch_impl.models.alexnet import SimAM as TorchSimAM


@pytest.fixture(params=["compiled", "eager"], autouse=True)
def torch_kernels(request, monkeypatch):
    from pytorch_impl.models import alexnet
    for name in ("_train_forward", "_backward"):
        monkeypatch.setattr(alexnet, name, getattr(getattr(alexnet, name), request.param))


@pytest.fixture(autouse=True)
def both_paddle_kernels(paddle_kernels):
    """Every case with Paddle's fused and composed SimAM (``parity_tests/conftest.py``)."""


def simam_formula(x, e_lambda):
    """Eq. of the issue / paper in float64: e = (x-mu)^2 / (4 (var + lambda)) + 0.5 with
    var = sum((x-mu)^2) / (H*W - 1); out = sigmoid(e) * x."""
    x = np.asarray(x, np.float64)
    n = x.shape[2] * x.shape[3] - 1
    d = (x - x.mean(axis=(2, 3), keepdims=True)) ** 2
    e = d / (4 * (d.sum(axis=(2, 3), keepdims=True) / n + e_lambda)) + 0.5
    return x / (1 + np.exp(-e))


def formula_gradient(x, upstream, e_lambda):
    """The input gradient of ``sum(upstream * formula(x))``, by torch's autograd through the
    formula's composed ops."""
    xt = torch.tensor(x, requires_grad=True)
    n = x.shape[2] * x.shape[3] - 1
    d = (xt - xt.mean(dim=(2, 3), keepdim=True)) ** 2
    e = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + e_lambda)) + 0.5
    (torch.sigmoid(e) * xt * torch.from_numpy(upstream)).sum().backward()
    return xt.grad.numpy()


def inputs(dtype):
    """N=2, C=4, 5x7: random channels, a constant channel (zero variance), a channel of
    magnitude 1e4, and one nearly constant (variance far below lambda)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 5, 7))
    x[:, 1] = 3.25
    x[:, 2] *= 1e4
    x[:, 3] = 0.5 + 1e-4 * x[:, 3]
    return x.astype(dtype)


def run_paddle(x, upstream, e_lambda):
    xt = paddle.to_tensor(x, stop_gradient=False)
    out = PaddleSimAM(e_lambda)(xt)
    (out * paddle.to_tensor(upstream)).sum().backward()
    return out.numpy(), xt.grad.numpy()


def run_torch(x, upstream, e_lambda):
    xt = torch.tensor(x, requires_grad=True)
    out = TorchSimAM(e_lambda)(xt)
    (out * torch.from_numpy(upstream)).sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("e_lambda", [1e-5, 1e-4])
def test_simam_values_and_input_gradients_float64(e_lambda):
    x = inputs(np.float64)
    upstream = np.random.default_rng(5).standard_normal(x.shape)
    p_out, p_grad = run_paddle(x, upstream, e_lambda)
    t_out, t_grad = run_torch(x, upstream, e_lambda)
    assert_close(t_out, p_out, np.float64, "SimAM output, torch vs paddle")
    assert_close(p_out, simam_formula(x, e_lambda), np.float64, "SimAM output vs formula")
    assert_close(t_grad, p_grad, np.float64, "SimAM input gradient, torch vs paddle")
    expected = formula_gradient(x, upstream, e_lambda)
    for c in range(4):  # the per-channel cases one by one, so a small channel is not hidden
        assert_close(t_grad[:, c], p_grad[:, c], np.float64, f"SimAM input gradient, channel {c}")
        assert_close(p_grad[:, c], expected[:, c], np.float64,
                     f"SimAM gradient vs formula, channel {c}")
        assert_close(t_out[:, c], p_out[:, c], np.float64, f"SimAM output, channel {c}")


def test_simam_zero_variance_is_sigmoid_half():
    """A constant channel has x - mu = 0, so e = 0.5 exactly and out = sigmoid(0.5) * x."""
    x = inputs(np.float64)
    upstream = np.ones_like(x)
    for out, grad in (run_paddle(x, upstream, 1e-5), run_torch(x, upstream, 1e-5)):
        np.testing.assert_allclose(out[:, 1], 3.25 / (1 + np.exp(-0.5)), rtol=1e-15)
        assert np.all(np.isfinite(grad))


def test_simam_lambda_matters():
    """The nearly constant channel (variance 1e-8) separates lambda = 1e-5 from 1e-4."""
    x = inputs(np.float64)
    a, b = simam_formula(x, 1e-5)[:, 3], simam_formula(x, 1e-4)[:, 3]
    assert np.abs(a - b).max() > 1e-7
    assert_close(run_torch(x, np.ones_like(x), 1e-4)[0][:, 3], b, np.float64, "lambda 1e-4")


def test_simam_float32():
    """Random, constant and 1e4-magnitude channels. The nearly constant channel is left to
    float64: in float32 ``x - mu`` keeps only ~3 digits of its 1e-4 spread there and the
    gradient amplifies that by 1 / (var + lambda) ~ 1e5, so it measures round-off only."""
    x = inputs(np.float32)[:, :3].copy()
    upstream = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    p_out, p_grad = run_paddle(x, upstream, 1e-5)
    t_out, t_grad = run_torch(x, upstream, 1e-5)
    assert_close(t_out, p_out, np.float32, "SimAM output float32")
    assert_close(t_grad, p_grad, np.float32, "SimAM input gradient float32")
    assert_close(p_out, simam_formula(x, 1e-5), np.float32, "SimAM float32 vs float64 formula")


def test_torch_simam_backward_twice_through_a_retained_graph():
    """The written-out backward leaves its saved tensors as they were: a second backward
    pass through a retained graph (as ``torch.autograd.gradcheck`` takes) gives the same
    gradient as the first."""
    xt = torch.tensor(inputs(np.float64), requires_grad=True)
    upstream = torch.from_numpy(np.random.default_rng(5).standard_normal(xt.shape))
    loss = (TorchSimAM(1e-5)(xt) * upstream).sum()
    first, = torch.autograd.grad(loss, xt, retain_graph=True)
    second, = torch.autograd.grad(loss, xt)
    assert_close(second, first, np.float64, "second backward pass")
    assert_close(first, formula_gradient(inputs(np.float64), upstream.numpy(), 1e-5), np.float64,
                 "first backward pass vs formula")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_simam_with_its_relu_is_simam_then_relu(dtype):
    """``SimAM(x, relu=True)``, which AlexNet-SimAM's forward pass uses: the output of SimAM
    then ReLU, in training and inference, and the input gradient of SimAM then ReLU (the
    gradient of ``upstream * relu(formula)``: ``upstream`` kept where the output is
    positive)."""
    x = inputs(dtype)[:, :3].copy() if dtype == np.float32 else inputs(dtype)
    upstream = np.random.default_rng(6).standard_normal(x.shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    out = TorchSimAM(1e-5)(xt, relu=True)
    (out * torch.from_numpy(upstream)).sum().backward()
    with torch.no_grad():
        inferred = TorchSimAM(1e-5)(torch.from_numpy(x), relu=True)
    _, unfused_grad = run_torch(x, upstream * (simam_formula(x, 1e-5) > 0), 1e-5)
    exact = simam_formula(x, 1e-5)
    assert (exact < 0).any() and (exact > 0).any()
    for what, value in (("training", out.detach()), ("inference", inferred)):
        assert value.dtype == xt.dtype
        assert_close(value, np.maximum(exact, 0), dtype, f"SimAM + ReLU output, {what}")
    assert_close(xt.grad, unfused_grad, dtype, "SimAM + ReLU gradient vs SimAM then ReLU")
    if dtype == np.float64:
        expected = formula_gradient(x, upstream * (exact > 0), 1e-5)
        assert_close(xt.grad, expected, np.float64, "SimAM + ReLU gradient vs formula")
