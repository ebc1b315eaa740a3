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
from ..layers import last_axis_means, ones_row


class SimAM(nn.HybridBlock):
    """Parameter-free 3-D attention (SimAM, Sec. 3.2, Eq. 5-6 and Fig. 3 of the paper).

    Per channel, with ``n = H*W - 1``, ``mu`` the spatial mean and
    ``var = sum((x - mu)^2) / n``, the inverse minimal energy of each neuron is
    ``e = (x - mu)^2 / (4 * (var + e_lambda)) + 0.5``, and the output is
    ``sigmoid(e) * x``. Needs ``H*W > 1``. A hybridized graph has no shapes, so ``n`` is
    counted in the graph: the sum of a row of ``H*W`` ones (exact in floating point). Each
    channel's sums are products with that row and its mean and variance are spread over
    the channel by a product with it (``gluon_impl.layers.last_axis_means``: MXNet's
    reductions and broadcasts are slow on the CPU). The sigmoid is ``Activation`` (MKLDNN's
    kernel, several times as fast as ``F.sigmoid``) and the energy multiplies ``d`` by
    ``1 / (4 (var + e_lambda))`` (a product's gradient is cheaper than a quotient's): the
    forward and backward passes of AlexNet-SimAM's five SimAMs at batch 128 (hybridized,
    2 threads) take 165-200 ms instead of 255-270.
    """

    def __init__(self, e_lambda=1e-5):
        super().__init__()
        self.e_lambda = e_lambda

    def hybrid_forward(self, F, x):
        rows = F.reshape(x, (0, 0, -1))  # [N, C, H*W]
        ones = ones_row(F, rows, 3)
        d = F.square(F.elemwise_sub(rows, F.dot(last_axis_means(F, rows, ones), ones)))
        sums = F.FullyConnected(d, ones, no_bias=True, flatten=False, num_hidden=1)
        var = F.broadcast_div(sums, F.sum(ones) - 1)
        energy_inv = F.elemwise_mul(d, F.dot(0.25 / (var + self.e_lambda), ones)) + 0.5
        return F.reshape_like(rows * F.Activation(energy_inv, act_type="sigmoid"), x)

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
