"""SAN (born in PyTorch) against its PaddlePaddle port: operators, weight conversion through
common/convert.py, forward in eval and train mode, gradients and three SGD steps of a reduced
SAN (layers (1, 1, 1, 1, 1)) at 32x32 (forward batch 2, float32 train mode 32, gradients 4,
training steps 8), in float64 (and float32 for the forward).

At 32x32 the five stages see 16, 8, 4, 2 and 1 pixels, and reflection padding needs an input
larger than the padding, so the reduced SAN uses kernels (3, 3, 3, 3, 1).
"""
import numpy as np
import paddle
import pytest
import torch

from common.convert import match_state, to_canonical
from common.formats import convert_state
from common.labels import smooth_uniform
from common.schedules import cosine_lr
from paddle_impl import create_model as create_paddle
from paddle_impl import san_ops as paddle_ops
from parity_tests.tolerances import assert_close, assert_float32_roundoff
from pytorch_impl import create_model as create_torch
from pytorch_impl import san_ops as torch_ops

REDUCED = dict(num_classes=10, layers=(1, 1, 1, 1, 1), kernels=(3, 3, 3, 3, 1))
SA_TYPES = ("pairwise", "patchwise")
# Batch norms over few values amplify round-off in their backward pass (the last stage is
# 1x1): gradients use batch 4 (batch 2 leaves ~1e-11 of noise), and the three training steps
# batch 8, where two torch runs that differ only in summation order stay within 3e-11 (at
# batch 4 the patchwise SAN drifts apart by 7e-8 in three steps, whatever the learning rate)
GRAD_BATCH, TRAIN_BATCH, TRAIN32_BATCH = 4, 8, 32


def torch_state(model):
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def paddle_state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def paddle_shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def randomise_bn_statistics(model, seed):
    """Non-trivial running statistics and affine parameters, so that eval mode is tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def build_pair(sa_type, dtype):
    """A reduced torch SAN with random weights and its Paddle port loaded through the
    canonical naming rules (plain ``set_state_dict`` after ``match_state``)."""
    torch.manual_seed(0)
    name = f"san10_{sa_type}"
    t_model = create_torch(name, **REDUCED).to(getattr(torch, dtype))
    randomise_bn_statistics(t_model, 1)
    default = paddle.get_default_dtype()
    paddle.set_default_dtype(dtype)
    try:
        p_model = create_paddle(name, **REDUCED)
    finally:
        paddle.set_default_dtype(default)
    shapes = paddle_shapes(p_model)
    state = convert_state(torch_state(t_model), "pytorch", "paddle", shapes)
    match_state(state, shapes)
    p_model.set_state_dict(state)
    return t_model, p_model


@pytest.fixture(scope="module", params=SA_TYPES)
def pair64(request):
    return build_pair(request.param, "float64")


def images(dtype, seed=0, n=2):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(dtype)


# --------------------------------------------------------------------------- operators
# kernel, stride, dilation, padding, h, w: stride 1 (Paddle's row-range aggregation) and 2
OPERATOR_GEOMETRIES = [(3, 1, 1, 1, 5, 6), (3, 1, 2, 2, 6, 7), (5, 2, 2, 4, 7, 8)]
OPERATOR_RESULTS = ("aggregation", "subtraction2", "subtraction", "grad x1", "grad x2", "grad weight")


def operator_inputs(geometry, dtype):
    """(x1, x2, weight, upstream gradient of the aggregation, of the subtractions) for the
    operator parity tests at ``geometry``, as numpy arrays."""
    k, s, d, p, h, w = geometry
    rng = np.random.default_rng(0)
    oh, ow = torch_ops.output_size(h, k, s, p, d), torch_ops.output_size(w, k, s, p, d)
    x1, x2 = rng.standard_normal((2, 2, 4, h, w)).astype(dtype)
    weight = rng.standard_normal((2, 2, k * k, oh * ow)).astype(dtype)
    g_agg = rng.standard_normal((2, 4, oh, ow)).astype(dtype)
    g_sub = rng.standard_normal((2, 4, k * k, oh * ow)).astype(dtype)
    return x1, x2, weight, g_agg, g_sub


def operator_loss(ops, x1, x2, weight, g_agg, g_sub, geometry, pad_mode):
    """A framework's three operators (module ``ops``) on its tensors, and the loss whose
    gradients are the operators' backward against the upstream ``g_agg``, ``g_sub``:
    ([aggregation, subtraction2, subtraction], loss)."""
    k, s, d, p = geometry[:4]
    y_agg = ops.aggregation(x1, weight, k, s, p, d, pad_mode)
    y_sub2 = ops.subtraction2(x1, x2, k, s, p, d, pad_mode)
    y_sub = ops.subtraction(x2, k, s, p, d, pad_mode)
    return [y_agg, y_sub2, y_sub], (y_agg * g_agg).sum() + ((y_sub2 + 2 * y_sub) * g_sub).sum()


def torch_operator_results(geometry, pad_mode, dtype):
    """PyTorch's outputs and input gradients (:data:`OPERATOR_RESULTS`), the reference."""
    arrays = operator_inputs(geometry, dtype)
    inputs = [torch.tensor(a, requires_grad=True) for a in arrays[:3]]
    outputs, loss = operator_loss(torch_ops, *inputs, *map(torch.tensor, arrays[3:]), geometry, pad_mode)
    loss.backward()
    return [t.detach() for t in outputs] + [t.grad for t in inputs]


@pytest.mark.parametrize("dtype", (np.float64, np.float32))
@pytest.mark.parametrize("pad_mode", (0, 1))
@pytest.mark.parametrize("geometry", OPERATOR_GEOMETRIES)
def test_operators_forward_and_backward(geometry, pad_mode, dtype, paddle_kernels):
    arrays = operator_inputs(geometry, dtype)
    inputs = [paddle.to_tensor(a, stop_gradient=False) for a in arrays[:3]]
    outputs, loss = operator_loss(paddle_ops, *inputs, *map(paddle.to_tensor, arrays[3:]), geometry,
                                  pad_mode)
    loss.backward()
    for name, actual, expected in zip(OPERATOR_RESULTS, outputs + [t.grad for t in inputs],
                                      torch_operator_results(geometry, pad_mode, dtype)):
        assert_close(actual, expected, dtype, name)


# --------------------------------------------------------------------------- conversion
def test_conversion_round_trip_is_bit_exact(pair64):
    t_model, p_model = pair64
    source = torch_state(t_model)
    back = convert_state(paddle_state(p_model), "paddle", "pytorch", {k: v.shape for k, v in source.items()})
    assert set(back) == set(source)
    for k, v in source.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    t_model.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


# --------------------------------------------------------------------------- forward
def test_forward_eval_float64(pair64, paddle_kernels):
    t_model, p_model = pair64
    t_model.eval(), p_model.eval()
    x = images(np.float64)
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    assert_close(p_model(paddle.to_tensor(x)), expected, np.float64, "eval logits")


@pytest.mark.parametrize("sa_type", SA_TYPES)
def test_forward_eval_float32(sa_type):
    t_model, p_model = build_pair(sa_type, "float32")
    t_model.eval(), p_model.eval()
    x = images(np.float32, seed=1)
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    assert_close(p_model(paddle.to_tensor(x)), expected, np.float32, "eval logits")


def test_forward_train_and_running_statistics_float64(pair64):
    """Train mode: batch statistics in the forward, and torch's unbiased running-variance
    update reproduced by the Paddle batch norms. At batch ``GRAD_BATCH``: over 2 images the
    last stages normalise 2 and 1 pixels, and the patchwise logits were 1.73 float64
    tolerances off on an Intel Xeon host (0.003 over 4; within the tolerance on AMD EPYC)."""
    t_model, p_model = pair64
    t_model.train(), p_model.train()
    before_t, before_p = torch_state(t_model), paddle_state(p_model)
    x = images(np.float64, seed=2, n=GRAD_BATCH)
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    with paddle.no_grad():
        actual = p_model(paddle.to_tensor(x)).numpy()
    assert_close(actual, expected, np.float64, "train-mode logits")
    converted = to_canonical(paddle_state(p_model), "paddle")
    stats = [k for k in converted if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 20
    for k in stats:
        assert_close(converted[k], torch_state(t_model)[k], np.float64, k)
    t_model.load_state_dict({k: torch.from_numpy(v) for k, v in before_t.items()})
    p_model.set_state_dict(before_p)


@pytest.mark.parametrize("sa_type", SA_TYPES)
def test_forward_train_and_running_statistics_float32(sa_type):
    """Float32 train mode against torch's float64 run of the same float32 weights and images:
    logits and running statistics (:func:`assert_float32_roundoff`: the float32 tolerance where
    torch's own float32 meets it). The batch is larger than elsewhere because the last stages
    see 2 and 1 pixels: over 2 images their batch statistics put torch's own float32 logits
    400-5000 float32 tolerances off float64, over 32 images 3-10."""
    t_model, p_model = build_pair(sa_type, "float32")
    exact = create_torch(f"san10_{sa_type}", **REDUCED).double()
    exact.load_state_dict({k: v.double() for k, v in t_model.state_dict().items()})
    x = images(np.float32, seed=2, n=TRAIN32_BATCH)
    for model in (t_model, exact, p_model):
        model.train()
    with torch.no_grad():
        expected, truth = t_model(torch.from_numpy(x)).numpy(), exact(torch.from_numpy(x).double()).numpy()
    with paddle.no_grad():
        actual = p_model(paddle.to_tensor(x)).numpy()
    assert_float32_roundoff(actual, expected, truth, "train-mode logits")
    port, native, exact = to_canonical(paddle_state(p_model), "paddle"), torch_state(t_model), torch_state(exact)
    stats = [k for k in exact if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 20
    for k in stats:
        assert_float32_roundoff(port[k], native[k], exact[k], k)


# --------------------------------------------------------------------------- gradients
def assert_grads_close(actual, expected):
    """Every parameter gradient of a port (canonical names) against PyTorch's, in float64. A
    conv's weight and bias are compared together: several biases here have a zero true
    gradient (cancelled by a train-mode batch norm, by the softmax over the footprint or by
    p_i - p_j), so their computed value is round-off noise and only the layer's gradient as
    a whole sets the scale."""
    assert set(actual) == set(expected) and len(expected) > 50
    for k in expected:
        if k.endswith(".bias") and k[:-4] + "weight" in expected and expected[k[:-4] + "weight"].ndim == 4:
            continue  # compared with its conv's weight below
        if expected[k].ndim == 4 and k[:-6] + "bias" in expected:
            bias = k[:-6] + "bias"
            assert_close(np.concatenate([actual[k].ravel(), actual[bias]]),
                         np.concatenate([expected[k].ravel(), expected[bias]]), np.float64,
                         f"grad {k} and {bias}")
        else:
            assert_close(actual[k], expected[k], np.float64, f"grad {k}")


def test_gradients_float64(pair64, paddle_kernels):
    t_model, p_model = pair64
    t_model.train(), p_model.train()
    before_t, before_p = torch_state(t_model), paddle_state(p_model)
    x, labels = images(np.float64, seed=3, n=GRAD_BATCH), np.array([3, 7, 0, 9])
    targets = smooth_uniform(labels, 10, 0.1, np.float64)
    tx = torch.tensor(x, requires_grad=True)
    t_loss = -(torch.from_numpy(targets) * torch.log_softmax(t_model(tx), 1)).sum(1).mean()
    t_model.zero_grad()
    t_loss.backward()
    px = paddle.to_tensor(x, stop_gradient=False)
    p_loss = -(paddle.to_tensor(targets) * paddle.nn.functional.log_softmax(p_model(px), 1)).sum(1).mean()
    p_model.clear_gradients()
    p_loss.backward()
    assert_close(p_loss, t_loss.detach(), np.float64, "loss")
    assert_close(px.grad, tx.grad, np.float64, "input gradient")
    p_grads = to_canonical({k: v.grad.numpy() for k, v in p_model.named_parameters()
                            if not v.stop_gradient}, "paddle")
    t_grads = {k: v.grad.numpy() for k, v in t_model.named_parameters()}
    assert_grads_close(p_grads, t_grads)
    t_model.load_state_dict({k: torch.from_numpy(v) for k, v in before_t.items()})
    p_model.set_state_dict(before_p)


# --------------------------------------------------------------------------- training
def test_three_sgd_steps_float64(pair64):
    """The reference recipe's optimiser (SGD, momentum 0.9, weight decay 1e-4 on every
    parameter, cosine learning rate, label smoothing 0.1) for three steps, with its base
    rate 0.1 at batch 256 scaled linearly to the batch.

    Paddle's momentum kernel keeps the coefficient in float32 (as its batch norm does, see
    ../shared/docs/framework-semantics.md); torch is given the same float32 value, which
    alone moves float64 parameters by 1e-8 after two steps."""
    t_model, p_model = pair64
    t_model.train(), p_model.train()
    base_lr = 0.1 * TRAIN_BATCH / 256
    t_opt = torch.optim.SGD(t_model.parameters(), lr=base_lr, momentum=float(np.float32(0.9)),
                            weight_decay=1e-4)
    p_opt = paddle.optimizer.Momentum(learning_rate=base_lr, momentum=0.9, weight_decay=1e-4,
                                      parameters=p_model.parameters())
    rng = np.random.default_rng(4)
    for step in range(3):
        lr = cosine_lr(step, base_lr, 3)
        x = rng.standard_normal((TRAIN_BATCH, 3, 32, 32))
        labels = rng.integers(0, 10, TRAIN_BATCH)
        targets = smooth_uniform(labels, 10, 0.1, np.float64)
        for group in t_opt.param_groups:
            group["lr"] = lr
        t_loss = -(torch.from_numpy(targets) * torch.log_softmax(
            t_model(torch.from_numpy(x)), 1)).sum(1).mean()
        t_opt.zero_grad()
        t_loss.backward()
        t_opt.step()
        p_opt.set_lr(lr)
        p_loss = -(paddle.to_tensor(targets) * paddle.nn.functional.log_softmax(
            p_model(paddle.to_tensor(x)), 1)).sum(1).mean()
        p_opt.clear_grad()
        p_loss.backward()
        p_opt.step()
        assert_close(p_loss, t_loss.detach(), np.float64, f"loss at step {step}")
    converted = to_canonical(paddle_state(p_model), "paddle")
    for k, v in torch_state(t_model).items():
        assert_close(converted[k], v, np.float64, f"{k} after 3 steps")
