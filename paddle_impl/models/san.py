"""SAN: self-attention networks (Zhao, Jia, Koltun, CVPR 2020), ported to PaddlePaddle from
the native PyTorch model (``pytorch_impl/models/san.py``, whose docstrings describe every
block). Same module tree and names; the batch norms update their running variance with
torch's unbiased batch variance (``unbiased_var=True``) so that trained statistics match.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from .. import kernels, register_model
from ..layers import BatchNorm2D, Conv2D, ReLU
from ..san_ops import REFLECT_PAD, aggregation, pad, subtraction2

SAN_LAYERS = {10: (2, 1, 2, 4, 1), 15: (3, 2, 3, 5, 2), 19: (3, 3, 4, 6, 3)}
SAN_KERNELS = (3, 7, 7, 7, 7)
STAGE_WIDTHS = (64, 256, 512, 1024, 2048)


def conv1x1(in_planes, out_planes, bias=True):
    return Conv2D(in_planes, out_planes, kernel_size=1, bias_attr=None if bias else False)


def batch_norm(planes):
    return BatchNorm2D(planes, unbiased_var=True)


def position_grid(height, width, dtype):
    """The two coordinate maps in [-1, 1] (x then y), shape [1, 2, H, W] (Sec. 3.1)."""
    loc_w = paddle.linspace(-1.0, 1.0, width, dtype=dtype).expand([height, width])
    loc_h = paddle.linspace(-1.0, 1.0, height, dtype=dtype).unsqueeze(1).expand([height, width])
    return paddle.stack([loc_w, loc_h]).unsqueeze(0)


def softmax_windows(w):
    """Softmax over the window axis of ``[N, C, k*k, L]``: on the CPU, where a C++ compiler
    is present, one fused operator (``paddle_impl/kernels/san.cc``); elsewhere Paddle's, on
    that axis moved last (its softmax over a middle axis takes twice as long: on [2, 8, 49,
    3136], 24.7 against 12.1 ms with both transposes)."""
    fused = kernels.for_tensor("san", w)
    if fused is not None:
        return fused.window_softmax(w)
    return F.softmax(w.transpose([0, 1, 3, 2]), axis=-1).transpose([0, 1, 3, 2])


class SAM(nn.Layer):
    """Self-attention module (Sec. 3): pairwise or patchwise weights, then aggregation."""

    def __init__(self, sa_type, in_planes, rel_planes, out_planes, share_planes, kernel_size):
        super().__init__()
        if sa_type not in ("pairwise", "patchwise"):
            raise ValueError(f"sa_type must be 'pairwise' or 'patchwise', got {sa_type!r}")
        self.sa_type, self.kernel_size, self.padding = sa_type, kernel_size, kernel_size // 2
        self.conv1 = conv1x1(in_planes, rel_planes)
        self.conv2 = conv1x1(in_planes, rel_planes)
        self.conv3 = conv1x1(in_planes, out_planes)
        weight_planes = out_planes // share_planes
        if sa_type == "pairwise":
            self.conv_w = nn.Sequential(
                batch_norm(rel_planes + 2), ReLU(),
                conv1x1(rel_planes + 2, rel_planes, bias=False),
                batch_norm(rel_planes), ReLU(),
                conv1x1(rel_planes, weight_planes))
            self.conv_p = conv1x1(2, 2)
        else:
            patch_planes = rel_planes * (kernel_size * kernel_size + 1)
            self.conv_w = nn.Sequential(
                batch_norm(patch_planes), ReLU(),
                conv1x1(patch_planes, weight_planes, bias=False),
                batch_norm(weight_planes), ReLU(),
                conv1x1(weight_planes, kernel_size * kernel_size * weight_planes))

    def attention_weights(self, x, x1, x2):
        """[N, out_planes // share_planes, k*k, H*W] attention weights."""
        n, _, h, w = x.shape
        k, p = self.kernel_size, self.padding
        if self.sa_type == "pairwise":
            # [subtraction2(x1, x2), subtraction(position)] along the channels, computed as
            # one subtraction2 of the channel-concatenated inputs (the same differences,
            # channel by channel), so the k*k-times larger relation is written once
            position = self.conv_p(position_grid(h, w, x.dtype)).expand([n, -1, -1, -1])
            relation = subtraction2(paddle.concat([x1, position], 1),
                                    paddle.concat([x2, position], 1), k, 1, p, 1, REFLECT_PAD)
            return softmax_windows(self.conv_w(relation))
        patch = F.unfold(pad(x2, p, REFLECT_PAD), k)
        features = paddle.concat([x1.reshape([n, -1, 1, h * w]), patch.reshape([n, -1, 1, h * w])], 1)
        return self.conv_w(features).reshape([n, -1, k * k, h * w])

    def forward(self, x):
        x1, x2, x3 = self.conv1(x), self.conv2(x), self.conv3(x)
        weights = self.attention_weights(x, x1, x2)
        return aggregation(x3, weights, self.kernel_size, 1, self.padding, 1, REFLECT_PAD)


class Bottleneck(nn.Layer):
    """Pre-activation bottleneck (Sec. 4): BN-ReLU-SAM-BN-ReLU-1x1 conv plus the identity."""

    def __init__(self, sa_type, planes, kernel_size, share_planes=8):
        super().__init__()
        self.bn1 = batch_norm(planes)
        self.sam = SAM(sa_type, planes, planes // 16, planes // 4, share_planes, kernel_size)
        self.bn2 = batch_norm(planes // 4)
        self.conv = conv1x1(planes // 4, planes)
        self.relu = ReLU()

    def forward(self, x):
        out = self.sam(self.relu(self.bn1(x)))
        out = self.conv(self.relu(self.bn2(out)))
        return out + x


class SAN(nn.Layer):
    """Stem, five stages of max-pool, 1x1 widening, bottlenecks and BN-ReLU; pool and fc."""

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
            setattr(self, f"layer{i}", nn.Sequential(
                *[Bottleneck(sa_type, width, kernel) for _ in range(blocks)]))
            previous = width
        self.relu = ReLU()
        self.pool = nn.MaxPool2D(kernel_size=2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x):
        x = self.relu(self.bn_in(self.conv_in(x)))
        for i in range(len(STAGE_WIDTHS)):
            stage = getattr(self, f"layer{i}")
            x = self.pool(x)
            x = self.relu(getattr(self, f"bn{i}")(stage(getattr(self, f"conv{i}")(x))))
        return self.fc(paddle.flatten(self.avgpool(x), 1))


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
