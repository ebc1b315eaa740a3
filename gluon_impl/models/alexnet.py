"""AlexNet for 128x128 images and AlexNet-SimAM: the MXNet Gluon port of the PaddlePaddle
models in ``paddle_impl/models/alexnet.py`` (same module tree and names: ``features.<i>``,
``classifier.<i>``, so a ``.pdparams`` converts by the naming rules of ``common/convert.py``).

SimAM: Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
Neural Networks", ICML 2021 (official module ZjjConan/SimAM). AlexNet: Krizhevsky et al.,
NeurIPS 2012, at half width for 3x128x128 inputs.

Port notes: every block is hybridizable; the ReLUs are ``nn.Activation('relu')`` (MXNet's
fast kernel, see ``../shared/docs/framework-semantics.md``). Dropout, as everywhere in Gluon,
is active only in train mode (inside ``autograd.record()``).
"""
from mxnet.gluon import nn

from .. import register_model


class SimAM(nn.HybridBlock):
    """Parameter-free 3-D attention (SimAM, Sec. 3.2, Eq. 5-6 and Fig. 3 of the paper).

    Per channel, with ``n = H*W - 1``, ``mu`` the spatial mean and
    ``var = sum((x - mu)^2) / n``, the inverse minimal energy of each neuron is
    ``e = (x - mu)^2 / (4 * (var + e_lambda)) + 0.5``, and the output is
    ``sigmoid(e) * x``. Needs ``H*W > 1``. A hybridized graph has no shapes, so ``n`` is
    counted in the graph: the sum of one H x W plane of ones (exact in floating point).
    """

    def __init__(self, e_lambda=1e-5):
        super().__init__()
        self.e_lambda = e_lambda

    def hybrid_forward(self, F, x):
        d = F.square(F.broadcast_sub(x, F.mean(x, axis=(2, 3), keepdims=True)))
        plane = F.slice_axis(F.slice_axis(x, axis=0, begin=0, end=1), axis=1, begin=0, end=1)
        n = F.sum(F.ones_like(plane), axis=(2, 3), keepdims=True) - 1
        var = F.broadcast_div(F.sum(d, axis=(2, 3), keepdims=True), n)
        energy_inv = F.broadcast_div(d, 4 * (var + self.e_lambda)) + 0.5
        return x * F.sigmoid(energy_inv)

    def __repr__(self):
        return f"{self.__class__.__name__}(e_lambda={self.e_lambda})"


class AlexNet(nn.HybridBlock):
    """AlexNet for 3x128x128 inputs (five convolutions, three max-pools, three Dense).

    Feature map sizes: 128 -> conv 11/4 -> 32 -> pool 3/2 -> 15 -> conv 5 -> 15 -> pool -> 7
    -> three conv 3 -> 7 -> pool -> 3, so the classifier sees 128 x 3 x 3 = 1152 features.
    With ``simam=True`` a :class:`SimAM` follows every convolution, before its ReLU
    (AlexNet-SimAM); it adds no parameters. With 10 classes both have 7,524,042, the count of
    the seed's results table (parity_tests/test_paper_tables.py). Every layer is given its
    input size, so the parameters' shapes are known before the first call.
    """

    def __init__(self, num_classes=10, simam=False, e_lambda=1e-5, dropout=0.5):
        super().__init__()
        with self.name_scope():  # names alexnet0_conv0_weight...: its export files convert
            self.features = nn.HybridSequential()
            convs = [(3, 48, 11, 4, 5, True), (48, 128, 5, 1, 2, True), (128, 192, 3, 1, 1, False),
                     (192, 192, 3, 1, 1, False), (192, 128, 3, 1, 1, True)]
            for c_in, c_out, kernel, stride, padding, pool in convs:
                self.features.add(nn.Conv2D(c_out, kernel, strides=stride, padding=padding,
                                            in_channels=c_in))
                if simam:
                    self.features.add(SimAM(e_lambda))
                self.features.add(nn.Activation("relu"))
                if pool:
                    self.features.add(nn.MaxPool2D(pool_size=3, strides=2))
            self.classifier = nn.HybridSequential()
            self.classifier.add(
                nn.Dense(2048, in_units=128 * 3 * 3), nn.Activation("relu"), nn.Dropout(dropout),
                nn.Dense(2048, in_units=2048), nn.Activation("relu"), nn.Dropout(dropout),
                nn.Dense(num_classes, in_units=2048))

    def hybrid_forward(self, F, x):
        return self.classifier(F.flatten(self.features(x)))


@register_model
def alexnet(num_classes=10, dropout=0.5):
    return AlexNet(num_classes, simam=False, dropout=dropout)


@register_model
def alexnet_simam(num_classes=10, e_lambda=1e-5, dropout=0.5):
    return AlexNet(num_classes, simam=True, e_lambda=e_lambda, dropout=dropout)
