"""AlexNet for 128x128 images and AlexNet-SimAM, native PaddlePaddle.

SimAM: Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
Neural Networks", ICML 2021 (official module ZjjConan/SimAM). AlexNet:
Krizhevsky et al., NeurIPS 2012, here at half width for 3x128x128 inputs as in the
PaddlePaddle AlexNet-SimAM experiment this project reproduces.

The module tree (``features.<i>``, ``classifier.<i>``) is the same in ``pytorch_impl``.
"""
import paddle
from paddle import nn

from .. import register_model


class SimAM(nn.Layer):
    """Parameter-free 3-D attention (SimAM, Sec. 3.2, Eq. 5-6 and Fig. 3 of the paper).

    Per channel, with ``n = H*W - 1``, ``mu`` the spatial mean and
    ``var = sum((x - mu)^2) / n``, the inverse minimal energy of each neuron is
    ``e = (x - mu)^2 / (4 * (var + e_lambda)) + 0.5``, and the output is
    ``sigmoid(e) * x``. Needs ``H*W > 1``.
    """

    def __init__(self, e_lambda=1e-5):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x):
        # square instead of ** 2 (Paddle's elementwise pow), and the channel's factor
        # 1 / (4 (var + e_lambda)) computed once, on the C-length sums, then multiplied
        n = x.shape[2] * x.shape[3] - 1
        d = paddle.square(x - x.mean(axis=[2, 3], keepdim=True))
        scale = 0.25 / (d.sum(axis=[2, 3], keepdim=True) / n + self.e_lambda)
        return x * nn.functional.sigmoid(d * scale + 0.5)

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
