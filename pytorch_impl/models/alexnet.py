"""AlexNet for 128x128 images and AlexNet-SimAM: the PyTorch port of the PaddlePaddle
models in ``paddle_impl/models/alexnet.py`` (same module tree and names).

SimAM: Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
Neural Networks", ICML 2021 (official module ZjjConan/SimAM). AlexNet: Krizhevsky et al.,
NeurIPS 2012, at half width for 3x128x128 inputs.
"""
import torch
from torch import nn

from .. import register_model
from ..layers import fused


def _gates(x, e_lambda):
    """Per channel of ``x``: its spatial mean ``mu``, ``k = 1 / (4 (var + e_lambda))`` and
    the gates ``s = sigmoid(k (x - mu)^2 + 1/2)`` (computed over one new tensor)."""
    mu = x.mean(dim=(2, 3), keepdim=True)  # torch.var_mean over (2, 3) is 2-3x slower
    d = (x - mu).square_()
    k = 0.25 / (d.sum(dim=(2, 3), keepdim=True) / (x.shape[2] * x.shape[3] - 1) + e_lambda)
    return mu, k, d.mul_(k).add_(0.5).sigmoid_()


@fused
def _train_forward(x, e_lambda, relu):
    """SimAM's output ``x s`` (``relu``: then the ReLU) and what its backward pass needs:
    ``s``, ``mu`` and ``k``."""
    mu, k, s = _gates(x, e_lambda)
    y = x * s
    return y.clamp_min(0) if relu else y, s, mu, k


@fused
def _backward(gy, x, s, mu, k, relu):
    """The input gradient (formula in :class:`_SimAMFunction`); leaves its inputs as they
    are."""
    plane = x.shape[2] * x.shape[3]
    if relu:  # the ReLU's gradient: gy where its input x s > 0, that is where x > 0 (s > 0)
        gy = torch.where(x > 0, gy, 0)
    c = x - mu
    t = torch.addcmul(s, s, s, value=-1).mul_(gy).mul_(x).mul_(c)
    a = t.sum(dim=(2, 3), keepdim=True)
    b = torch.einsum("nchw,nchw->nc", t, c)[:, :, None, None]
    gx = torch.addcmul(-2 * k * a / plane, gy, s)
    return gx.addcmul_(t, 2 * k).addcmul_(c, -8 * k * k * b / (plane - 1))


class _SimAMFunction(torch.autograd.Function):
    """SimAM's output and its input gradient, written out.

    Per channel, with ``c = x - mu``, ``k = 1 / (4 (var + e_lambda))``, ``e = k c^2 + 1/2``,
    ``s = sigmoid(e)`` and ``y = x s``: given ``gy``, with ``t = gy x s (1 - s) c``,
    ``A = sum(t)`` and ``B = sum(t c)`` over the H*W plane,
    ``gx = gy s + 2 k (t - A / (H W)) - 8 k^2 B c / (H W - 1)`` (the mean's gradient, and
    the variance's ``2 c / (H W - 1)``, with ``sum(c) = 0``). Saved: ``x``, ``s`` and the
    C-length ``mu`` and ``k``.

    In training, the forward and backward passes run as inductor's fused kernels where a
    compiler is present (:class:`pytorch_impl.layers.fused`): the five SimAMs of
    AlexNet-SimAM at batch 128 on 2 threads take 22 ms forward and backward instead of 63
    eagerly (2026-12-04). Eagerly they still take fewer passes over the tensor than autograd
    through the composed ops (1.9 times as fast): the backward pass makes three new tensors
    (``c``, ``t``, ``gx``) and starts ``gx`` from the C-length constant term. Writing ``t``
    into the saved ``s`` would save another 5% eagerly, but a second backward pass through a
    retained graph (``gradcheck``) would then fail. Inference runs eagerly, without a
    compilation: the output is written over ``s``, one tensor fewer (the five SimAMs'
    forward pass 2.5 times as fast, 30 against 12 ms).

    With ``relu``, the ReLU that follows is applied in the same passes: ``max(x s, 0)``, and
    in the backward pass ``gy`` is first kept where ``x s > 0``, which is where ``x > 0``
    (``s > 1/2``; a positive product never rounds to 0 there), exactly the ReLU's own rule.
    It spares the ReLU's pass over the tensor each way and the tensor between them.
    """

    @staticmethod
    def forward(ctx, x, e_lambda, relu):
        if not ctx.needs_input_grad[0]:  # inference: the output is written over s
            y = _gates(x, e_lambda)[2].mul_(x)
            return y.clamp_min_(0) if relu else y
        y, s, mu, k = _train_forward(x, e_lambda, relu)
        ctx.save_for_backward(x, s, mu, k)
        ctx.relu = relu
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        return _backward(gy, *ctx.saved_tensors, ctx.relu), None, None


class SimAM(nn.Module):
    """Parameter-free 3-D attention (SimAM, Sec. 3.2, Eq. 5-6 and Fig. 3 of the paper).

    Per channel, with ``n = H*W - 1``, ``mu`` the spatial mean and
    ``var = sum((x - mu)^2) / n``, the inverse minimal energy of each neuron is
    ``e = (x - mu)^2 / (4 * (var + e_lambda)) + 0.5``, and the output is
    ``sigmoid(e) * x`` (computed by :class:`_SimAMFunction`). Needs ``H*W > 1``.
    ``forward(x, relu=True)`` returns ``relu(SimAM(x))`` in the same passes.
    """

    def __init__(self, e_lambda=1e-5):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x, relu=False):
        return _SimAMFunction.apply(x, self.e_lambda, relu)

    def extra_repr(self):
        return f"e_lambda={self.e_lambda}"


class AlexNet(nn.Module):
    """AlexNet for 3x128x128 inputs (five convolutions, three max-pools, three Linear).

    Feature map sizes: 128 -> conv 11/4 -> 32 -> pool 3/2 -> 15 -> conv 5 -> 15 -> pool -> 7
    -> three conv 3 -> 7 -> pool -> 3, so the classifier sees 128 x 3 x 3 = 1152 features.
    With ``simam=True`` a :class:`SimAM` follows every convolution, before its ReLU
    (AlexNet-SimAM); it adds no parameters. With 10 classes both have 7,524,042, the count of
    the seed's results table (parity_tests/test_paper_tables.py). The forward pass lets each
    SimAM apply the ReLU after it (the module tree, and so the checkpoints' names, keep the
    ReLU): a train step at batch 128 on 2 threads cost 5.4% more than AlexNet's instead of
    9.7% (2026-12-04).
    """

    def __init__(self, num_classes=10, simam=False, e_lambda=1e-5, dropout=0.5):
        super().__init__()
        layers = []
        convs = [(3, 48, 11, 4, 5, True), (48, 128, 5, 1, 2, True), (128, 192, 3, 1, 1, False),
                 (192, 192, 3, 1, 1, False), (192, 128, 3, 1, 1, True)]
        for c_in, c_out, kernel, stride, padding, pool in convs:
            layers.append(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding))
            if simam:
                layers.append(SimAM(e_lambda))
            layers.append(nn.ReLU())
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(128 * 3 * 3, 2048), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(2048, 2048), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(2048, num_classes))

    def forward(self, x):
        layers = iter(self.features)
        for layer in layers:
            if isinstance(layer, SimAM):
                x = layer(x, relu=True)
                next(layers)  # the ReLU that follows, which SimAM applied
            else:
                x = layer(x)
        return self.classifier(torch.flatten(x, 1))


@register_model
def alexnet(num_classes=10, dropout=0.5):
    return AlexNet(num_classes, simam=False, dropout=dropout)


@register_model
def alexnet_simam(num_classes=10, e_lambda=1e-5, dropout=0.5):
    return AlexNet(num_classes, simam=True, e_lambda=e_lambda, dropout=dropout)
