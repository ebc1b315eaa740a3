"""SAN: self-attention networks (Zhao, Jia, Koltun, CVPR 2020), ported to MXNet Gluon from
the native PyTorch model (``pytorch_impl/models/san.py``, whose docstrings describe every
block). Same module tree and parameter names (the original hszhao/SAN's), so checkpoints
convert by the naming rules of ``common/convert.py`` alone.

Port notes: every block is hybridizable and no block reads a shape, so one hybridized graph
serves every input size (the position grid of pairwise attention is built from
``arange_like`` of the input; the operators of ``gluon_impl/san_ops.py`` slice relative to
the input's end). The batch norms update their running variance with torch's unbiased batch
variance (``gluon_impl.layers.BatchNorm(unbiased_var=True)``, momentum 0.9 = torch 0.1), in a
hybridized training graph with ``gluon_impl.layers.TorchRunningVariance``, as the UPANets port.
Layers are built without deferred shapes (every ``in_channels`` given), so the model's
``{name: shape}`` is known before its first call.
"""
from mxnet.gluon import nn

from .. import register_model
from ..layers import BatchNorm
from ..san_ops import REFLECT_PAD, aggregation, pad, subtraction, subtraction2

SAN_LAYERS = {10: (2, 1, 2, 4, 1), 15: (3, 2, 3, 5, 2), 19: (3, 3, 4, 6, 3)}
SAN_KERNELS = (3, 7, 7, 7, 7)
STAGE_WIDTHS = (64, 256, 512, 1024, 2048)


def conv1x1(in_planes, out_planes, bias=True):
    return nn.Conv2D(out_planes, 1, use_bias=bias, in_channels=in_planes)


def batch_norm(planes):
    return BatchNorm(planes, momentum=0.9, unbiased_var=True)


def relu():
    return nn.Activation("relu")  # F.relu is ~9x slower in MXNet's MKLDNN build


def softmax_windows(F, w):
    """Softmax over the window axis of ``[N, C, k*k, L]``, on that axis moved last: MXNet's
    softmax over a middle axis is its generic kernel, over the last one MKLDNN's (on
    [2, 8, 49, 3136], 2 threads: 18.0 ms, forward and backward 20.6, against 8.7 and 13.0
    with both transposes)."""
    return F.transpose(F.softmax(F.transpose(w, axes=(0, 1, 3, 2)), axis=-1), axes=(0, 1, 3, 2))


def _coordinates(F, x, axis):
    """torch's ``linspace(-1, 1, n)`` over axis ``axis`` of ``x`` (n its size), as torch
    computes it: ``-1 + i * step`` for ``i < n // 2``, ``1 - (n - 1 - i) * step`` from
    there, ``step = 2 / (n - 1)``; [-1] for one step."""
    i = F.contrib.arange_like(x, axis=axis)
    last = F.max(i)  # n - 1, a one-element array
    at_least_one = F.maximum(last, F.ones_like(last))
    step = F.broadcast_div(F.ones_like(last) * 2, at_least_one)
    first_half = F.broadcast_mul(i, step) - 1
    second_half = 1 - F.broadcast_mul(F.broadcast_sub(last, i), step)
    return F.where(F.broadcast_lesser(i * 2, at_least_one), first_half, second_half)


def position_grid(F, x):
    """The two coordinate maps in [-1, 1] (x then y) of ``x``'s H x W, shape [1, 2, H, W]."""
    cols, rows = _coordinates(F, x, 3), _coordinates(F, x, 2)
    loc_w = F.broadcast_add(F.reshape(cols, (1, -1)), F.reshape(F.zeros_like(rows), (-1, 1)))
    loc_h = F.broadcast_add(F.reshape(rows, (-1, 1)), F.reshape(F.zeros_like(cols), (1, -1)))
    return F.expand_dims(F.stack(loc_w, loc_h), 0)


class SAM(nn.HybridBlock):
    """Self-attention module (Sec. 3): pairwise or patchwise weights, then aggregation."""

    def __init__(self, sa_type, in_planes, rel_planes, out_planes, share_planes, kernel_size):
        super().__init__()
        if sa_type not in ("pairwise", "patchwise"):
            raise ValueError(f"sa_type must be 'pairwise' or 'patchwise', got {sa_type!r}")
        self.sa_type, self.kernel_size, self.padding = sa_type, kernel_size, kernel_size // 2
        self.conv1 = conv1x1(in_planes, rel_planes)
        self.conv2 = conv1x1(in_planes, rel_planes)
        self.conv3 = conv1x1(in_planes, out_planes)
        self.weight_planes = weight_planes = out_planes // share_planes
        self.conv_w = nn.HybridSequential()
        if sa_type == "pairwise":
            self.conv_w.add(batch_norm(rel_planes + 2), relu(),
                            conv1x1(rel_planes + 2, rel_planes, bias=False),
                            batch_norm(rel_planes), relu(),
                            conv1x1(rel_planes, weight_planes))
            self.conv_p = conv1x1(2, 2)
        else:
            patch_planes = rel_planes * (kernel_size * kernel_size + 1)
            self.conv_w.add(batch_norm(patch_planes), relu(),
                            conv1x1(patch_planes, weight_planes, bias=False),
                            batch_norm(weight_planes), relu(),
                            conv1x1(weight_planes, kernel_size * kernel_size * weight_planes))

    def attention_weights(self, F, x, x1, x2):
        """[N, out_planes // share_planes, k*k, H*W] attention weights."""
        k, p = self.kernel_size, self.padding
        if self.sa_type == "pairwise":
            position = self.conv_p(position_grid(F, x))
            relative_position = subtraction(position, k, 1, p, 1, REFLECT_PAD)
            relation = subtraction2(x1, x2, k, 1, p, 1, REFLECT_PAD)
            relative_position = F.broadcast_like(relative_position, relation, lhs_axes=(0,), rhs_axes=(0,))
            return softmax_windows(F, self.conv_w(F.concat(relation, relative_position, dim=1)))
        patch = F.im2col(pad(x2, p, REFLECT_PAD), kernel=(k, k))  # [N, rel * k*k, H*W]
        features = F.concat(F.expand_dims(F.reshape(x1, (0, 0, -1)), 2), F.expand_dims(patch, 2), dim=1)
        weights = F.reshape(self.conv_w(features), (0, -4, -1, k * k, -2))  # [N, C_w, k*k, 1, L]
        return F.reshape(weights, (0, 0, 0, -1))

    def hybrid_forward(self, F, x):
        x1, x2, x3 = self.conv1(x), self.conv2(x), self.conv3(x)
        weights = self.attention_weights(F, x, x1, x2)
        return aggregation(x3, weights, self.kernel_size, 1, self.padding, 1, REFLECT_PAD,
                           weight_channels=self.weight_planes)


class Bottleneck(nn.HybridBlock):
    """Pre-activation bottleneck (Sec. 4): BN-ReLU-SAM-BN-ReLU-1x1 conv plus the identity."""

    def __init__(self, sa_type, planes, kernel_size, share_planes=8):
        super().__init__()
        self.bn1 = batch_norm(planes)
        self.sam = SAM(sa_type, planes, planes // 16, planes // 4, share_planes, kernel_size)
        self.bn2 = batch_norm(planes // 4)
        self.conv = conv1x1(planes // 4, planes)
        self.relu = relu()

    def hybrid_forward(self, F, x):
        out = self.sam(self.relu(self.bn1(x)))
        out = self.conv(self.relu(self.bn2(out)))
        return out + x


class SAN(nn.HybridBlock):
    """Stem (1x1 conv-BN-ReLU), then five stages of 2x2 max-pool, 1x1 conv widening
    (``conv{i}``), bottlenecks (``layer{i}``), BN-ReLU (``bn{i}``); global average pool and
    ``fc`` (Table 1)."""

    def __init__(self, sa_type, layers, kernels, num_classes=1000):
        super().__init__()
        if len(layers) != 5 or len(kernels) != 5:
            raise ValueError(f"SAN has five stages: got layers {layers} and kernels {kernels}")
        c = STAGE_WIDTHS[0]
        self.conv_in, self.bn_in = conv1x1(3, c, bias=False), batch_norm(c)
        previous = c
        for i, (width, blocks, kernel) in enumerate(zip(STAGE_WIDTHS, layers, kernels)):
            setattr(self, f"conv{i}", conv1x1(previous, width, bias=False))
            setattr(self, f"bn{i}", batch_norm(width))
            stage = nn.HybridSequential()
            stage.add(*[Bottleneck(sa_type, width, kernel) for _ in range(blocks)])
            setattr(self, f"layer{i}", stage)
            previous = width
        self.relu = relu()
        self.pool = nn.MaxPool2D(pool_size=2, strides=2)
        self.avgpool = nn.GlobalAvgPool2D()
        self.fc = nn.Dense(num_classes, in_units=previous)  # flattens [N, C, 1, 1]

    def hybrid_forward(self, F, x):
        x = self.relu(self.bn_in(self.conv_in(x)))
        for i in range(len(STAGE_WIDTHS)):
            stage = getattr(self, f"layer{i}")
            x = self.pool(x)
            x = self.relu(getattr(self, f"bn{i}")(stage(getattr(self, f"conv{i}")(x))))
        return self.fc(self.avgpool(x))


def _san(sa_type, depth, num_classes, layers, kernels):
    return SAN(sa_type, tuple(layers or SAN_LAYERS[depth]), tuple(kernels or SAN_KERNELS),
               num_classes)


@register_model
def san10_pairwise(num_classes=1000, layers=None, kernels=None):
    return _san("pairwise", 10, num_classes, layers, kernels)


@register_model
def san10_patchwise(num_classes=1000, layers=None, kernels=None):
    return _san("patchwise", 10, num_classes, layers, kernels)


@register_model
def san15_pairwise(num_classes=1000, layers=None, kernels=None):
    return _san("pairwise", 15, num_classes, layers, kernels)


@register_model
def san15_patchwise(num_classes=1000, layers=None, kernels=None):
    return _san("patchwise", 15, num_classes, layers, kernels)


@register_model
def san19_pairwise(num_classes=1000, layers=None, kernels=None):
    return _san("pairwise", 19, num_classes, layers, kernels)


@register_model
def san19_patchwise(num_classes=1000, layers=None, kernels=None):
    return _san("patchwise", 19, num_classes, layers, kernels)
