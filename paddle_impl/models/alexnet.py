"""AlexNet for 128x128 images and AlexNet-SimAM, native PaddlePaddle.

SimAM: Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
Neural Networks", ICML 2021 (official module ZjjConan/SimAM). AlexNet:
Krizhevsky et al., NeurIPS 2012, here at half width for 3x128x128 inputs as in the
PaddlePaddle AlexNet-SimAM experiment this project reproduces.

The module tree (``features.<i>``, ``classifier.<i>``) is the same in ``pytorch_impl``.
"""
import paddle
from paddle import nn
from paddle.autograd import PyLayer

from .. import kernels, register_model


def plane_sum(t):
    """The sum over H and W of ``t`` [N, C, H, W], as ``[N, C, 1, 1]``: a product with a
    column of ones, which Paddle's CPU computes several times faster than its reduction (on
    [128, 48, 31, 31]: 0.44 against 3.6 ms)."""
    n, c, h, w = t.shape
    ones = paddle.ones([h * w, 1], t.dtype)
    return paddle.matmul(t.reshape([n * c, h * w]), ones).reshape([n, c, 1, 1])


def plane_broadcast(v, like):
    """``v`` [N, C, 1, 1] repeated over the H x W plane of ``like``: a product with a row of
    ones, after which Paddle's CPU combines two tensors of one shape far faster than it
    broadcasts ``v`` (SimAM's forward and backward at AlexNet's shapes, batch 128: 108
    against 131 ms, the same values)."""
    n, c, h, w = like.shape
    ones = paddle.ones([1, h * w], v.dtype)
    return paddle.matmul(v.reshape([n * c, 1]), ones).reshape(like.shape)


class _SimAMFunction(PyLayer):
    """SimAM's output and its input gradient in fewer passes over the tensor than autograd
    takes through the composed ops: the rule of ``pytorch_impl.models.alexnet``'s
    ``_SimAMFunction``. Per channel, with ``c = x - mu``, ``k = 1 / (4 (var + e_lambda))``,
    ``s = sigmoid(k c^2 + 1/2)`` and ``y = x s``: given ``gy``, with
    ``t = gy x s (1 - s) c``, ``A = sum(t)`` and ``B = sum(t c)`` over the H*W plane,
    ``gx = gy s + 2 k (t - A / (H W)) - 8 k^2 B c / (H W - 1)``. Saved: ``x``, ``s`` and the
    C-length ``mu`` and ``k``. The plane sums are :func:`plane_sum`, every per-channel
    factor meets the tensor through :func:`plane_broadcast`, and the sigmoid is
    ``(1 + tanh(z / 2)) / 2``, the same function, which Paddle's CPU computes in less than
    half the time (on [128, 48, 31, 31]: 2.7 against 7.5 ms); squares are products
    (``paddle.square`` takes twice as long as ``c * c``)."""

    @staticmethod
    def forward(ctx, x, e_lambda):
        plane = x.shape[2] * x.shape[3]
        mu = plane_sum(x).scale_(1.0 / plane)
        c = x - plane_broadcast(mu, x)
        d = c * c
        k = 0.25 / (plane_sum(d) / (plane - 1) + e_lambda)
        s = paddle.tanh(d.multiply_(plane_broadcast(0.5 * k, x)).scale_(1.0, 0.25)).scale_(0.5, 0.5)
        ctx.save_for_backward(x, s, mu, k)
        return x * s

    @staticmethod
    def backward(ctx, gy):
        x, s, mu, k = ctx.saved_tensor()
        plane = x.shape[2] * x.shape[3]
        c = x - plane_broadcast(mu, x)
        t = (gy * x).multiply_(s - s * s).multiply_(c)
        a = plane_sum(t)
        b = plane_sum(t * c)
        gx = (gy * s).add_(t.multiply_(plane_broadcast(2 * k, x)))
        gx.subtract_(c.multiply_(plane_broadcast((8 / (plane - 1)) * k * k * b, x)))
        return gx.subtract_(plane_broadcast((2 / plane) * k * a, x))


class SimAM(nn.Layer):
    """Parameter-free 3-D attention (SimAM, Sec. 3.2, Eq. 5-6 and Fig. 3 of the paper).

    Per channel, with ``n = H*W - 1``, ``mu`` the spatial mean and
    ``var = sum((x - mu)^2) / n``, the inverse minimal energy of each neuron is
    ``e = (x - mu)^2 / (4 * (var + e_lambda)) + 0.5``, and the output is
    ``sigmoid(e) * x``. Needs ``H*W > 1``. On the CPU, where a C++ compiler is present, it is
    one fused operator (``paddle_impl/kernels/simam.cc``: each plane's statistics and
    elements while the plane is in cache, forward and gradient; AlexNet-SimAM's five layers
    at batch 128 take 29 ms against 112 ms composed); elsewhere the composed operations of
    :class:`_SimAMFunction`.
    """

    def __init__(self, e_lambda=1e-5):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x):
        fused = kernels.for_tensor("simam", x)
        if fused is not None:
            return fused.simam(x, self.e_lambda)[0]
        return _SimAMFunction.apply(x, self.e_lambda)

    def extra_repr(self):
        return f"e_lambda={self.e_lambda}"


class AlexNet(nn.Layer):
    """AlexNet for 3x128x128 inputs (five convolutions, three max-pools, three Linear).

    Feature map sizes: 128 -> conv 11/4 -> 32 -> pool 3/2 -> 15 -> conv 5 -> 15 -> pool -> 7
    -> three conv 3 -> 7 -> pool -> 3, so the classifier sees 128 x 3 x 3 = 1152 features.
    With ``simam=True`` a :class:`SimAM` follows every convolution, before its ReLU
    (AlexNet-SimAM); it adds no parameters. With 10 classes both have 7,524,042, the count of
    the seed's results table (parity_tests/test_paper_tables.py).
    """

    def __init__(self, num_classes=10, simam=False, e_lambda=1e-5, dropout=0.5):
        super().__init__()
        layers = []
        convs = [(3, 48, 11, 4, 5, True), (48, 128, 5, 1, 2, True), (128, 192, 3, 1, 1, False),
                 (192, 192, 3, 1, 1, False), (192, 128, 3, 1, 1, True)]
        for c_in, c_out, kernel, stride, padding, pool in convs:
            layers.append(nn.Conv2D(c_in, c_out, kernel, stride=stride, padding=padding))
            if simam:
                layers.append(SimAM(e_lambda))
            layers.append(nn.ReLU())
            if pool:
                layers.append(nn.MaxPool2D(kernel_size=3, stride=2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(128 * 3 * 3, 2048), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(2048, 2048), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(2048, num_classes))

    def forward(self, x):
        return self.classifier(paddle.flatten(self.features(x), 1))


@register_model
def alexnet(num_classes=10, dropout=0.5):
    return AlexNet(num_classes, simam=False, dropout=dropout)


@register_model
def alexnet_simam(num_classes=10, e_lambda=1e-5, dropout=0.5):
    return AlexNet(num_classes, simam=True, e_lambda=e_lambda, dropout=dropout)
