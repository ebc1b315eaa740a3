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

from .. import register_model


class _SimAMFunction(PyLayer):
    """SimAM's output and its input gradient in fewer passes over the tensor than autograd
    takes through the composed ops: the rule of ``pytorch_impl.models.alexnet``'s
    ``_SimAMFunction``. Per channel, with ``c = x - mu``, ``k = 1 / (4 (var + e_lambda))``,
    ``s = sigmoid(k c^2 + 1/2)`` and ``y = x s``: given ``gy``, with
    ``t = gy x s (1 - s) c``, ``A = sum(t)`` and ``B = sum(t c)`` over the H*W plane,
    ``gx = gy s + 2 k (t - A / (H W)) - 8 k^2 B c / (H W - 1)``. Saved: ``x``, ``s`` and the
    C-length ``mu`` and ``k``."""

    @staticmethod
    def forward(ctx, x, e_lambda):
        n = x.shape[2] * x.shape[3] - 1
        mu = x.mean(axis=[2, 3], keepdim=True)
        d = paddle.square(x - mu)
        k = 0.25 / (d.sum(axis=[2, 3], keepdim=True) / n + e_lambda)
        s = d.multiply_(k).scale_(1.0, 0.5).sigmoid_()
        ctx.save_for_backward(x, s, mu, k)
        return x * s

    @staticmethod
    def backward(ctx, gy):
        x, s, mu, k = ctx.saved_tensor()
        plane = x.shape[2] * x.shape[3]
        c = x - mu
        t = (gy * x).multiply_(s - paddle.square(s)).multiply_(c)
        a = t.sum(axis=[2, 3], keepdim=True)
        b = (t * c).sum(axis=[2, 3], keepdim=True)
        gx = (gy * s).add_(t.multiply_(2 * k)).subtract_(c.multiply_((8 / (plane - 1)) * k * k * b))
        return gx.subtract_((2 / plane) * k * a)


class SimAM(nn.Layer):
    """Parameter-free 3-D attention (SimAM, Sec. 3.2, Eq. 5-6 and Fig. 3 of the paper).

    Per channel, with ``n = H*W - 1``, ``mu`` the spatial mean and
    ``var = sum((x - mu)^2) / n``, the inverse minimal energy of each neuron is
    ``e = (x - mu)^2 / (4 * (var + e_lambda)) + 0.5``, and the output is
    ``sigmoid(e) * x`` (computed by :class:`_SimAMFunction`). Needs ``H*W > 1``.
    """

    def __init__(self, e_lambda=1e-5):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x):
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
