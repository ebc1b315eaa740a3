"""SAN: self-attention networks (Zhao, Jia, Koltun, "Exploring Self-attention for Image
Recognition", CVPR 2020), born in PyTorch (hszhao/SAN); the Paddle port in
``paddle_impl/models/san.py`` has the same module tree and names.

A SAN is a ResNet-like stack of five stages whose spatial convolutions are replaced by
self-attention (Sec. 4): a 1x1 stem, then per stage a 2x2 max-pool, a 1x1 conv widening to
64, 256, 512, 1024, 2048 channels and bottleneck blocks around a self-attention module (SAM).
The SAM (Sec. 3) computes ``y_i = sum_j alpha(x_i, x_j) * beta(x_j)`` over a ``k x k``
footprint, with one attention weight per group of ``share_planes`` channels:

* pairwise (Sec. 3.1, Eq. 2-3): the relation ``gamma(delta(x_i, x_j))`` with
  ``delta = phi(x_i) - psi(x_j)`` (subtraction) concatenated with the position encoding
  ``p_i - p_j``, normalised by a softmax over the footprint;
* patchwise (Sec. 3.2, Eq. 4-5): ``gamma`` of the concatenation of ``phi(x_i)`` and the whole
  unfolded patch ``psi(x_j), j in R(i)``, which yields the weights of every ``j`` at once.

Registered: ``san{10,15,19}_{pairwise,patchwise}`` (Table 1); each takes ``num_classes`` and
optionally ``layers`` / ``kernels`` to build a reduced SAN (e.g. ``layers=(1, 1, 1, 1, 1)``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .. import register_model
from ..layers import BatchNorm2d
from ..san_ops import REFLECT_PAD, aggregation, pad, subtraction, subtraction2

SAN_LAYERS = {10: (2, 1, 2, 4, 1), 15: (3, 2, 3, 5, 2), 19: (3, 3, 4, 6, 3)}
SAN_KERNELS = (3, 7, 7, 7, 7)
STAGE_WIDTHS = (64, 256, 512, 1024, 2048)


def conv1x1(in_planes, out_planes, bias=True):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=bias)


def _coordinates(steps, dtype, device):
    """``torch.linspace(-1, 1, steps)``; for one step torch's [-1] written out, because the
    ONNX exporter writes linspace with a step of 2 / (steps - 1), which is NaN there."""
    if int(steps) == 1:
        return torch.full((1,), -1.0, dtype=dtype, device=device)
    return torch.linspace(-1.0, 1.0, int(steps), dtype=dtype, device=device)


def position_grid(height, width, dtype, device):
    """The two coordinate maps in [-1, 1] (x then y), shape [1, 2, H, W] (Sec. 3.1)."""
    loc_w = _coordinates(width, dtype, device).expand(height, width)
    loc_h = _coordinates(height, dtype, device)[:, None].expand(height, width)
    return torch.stack([loc_w, loc_h])[None]


class SAM(nn.Module):
    """Self-attention module of a bottleneck (Sec. 3): ``conv1``/``conv2`` give the relation
    features phi, psi (``rel_planes``), ``conv3`` the values beta (``out_planes``), ``conv_w``
    the mapping gamma to ``out_planes // share_planes`` weights per footprint position, and
    :func:`aggregation` the weighted sum, with reflection padding as in the reference."""

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
                BatchNorm2d(rel_planes + 2), nn.ReLU(inplace=True),
                conv1x1(rel_planes + 2, rel_planes, bias=False),
                BatchNorm2d(rel_planes), nn.ReLU(inplace=True),
                conv1x1(rel_planes, weight_planes))
            self.conv_p = conv1x1(2, 2)
        else:
            patch_planes = rel_planes * (kernel_size * kernel_size + 1)
            self.conv_w = nn.Sequential(
                BatchNorm2d(patch_planes), nn.ReLU(inplace=True),
                conv1x1(patch_planes, weight_planes, bias=False),
                BatchNorm2d(weight_planes), nn.ReLU(inplace=True),
                conv1x1(weight_planes, kernel_size * kernel_size * weight_planes))

    def attention_weights(self, x, x1, x2):
        """[N, out_planes // share_planes, k*k, H*W] attention weights."""
        n, _, h, w = x.shape
        k, p = self.kernel_size, self.padding
        if self.sa_type == "pairwise":
            position = self.conv_p(position_grid(h, w, x.dtype, x.device))
            relative_position = subtraction(position, k, 1, p, 1, REFLECT_PAD)
            relation = torch.cat([subtraction2(x1, x2, k, 1, p, 1, REFLECT_PAD),
                                  relative_position.expand(n, -1, -1, -1)], 1)
            return torch.softmax(self.conv_w(relation), dim=-2)
        patch = F.unfold(pad(x2, p, REFLECT_PAD), k)
        features = torch.cat([x1.reshape(n, -1, 1, h * w), patch.view(n, -1, 1, h * w)], 1)
        return self.conv_w(features).view(n, -1, k * k, h * w)

    def forward(self, x):
        x1, x2, x3 = self.conv1(x), self.conv2(x), self.conv3(x)
        weights = self.attention_weights(x, x1, x2)
        return aggregation(x3, weights, self.kernel_size, 1, self.padding, 1, REFLECT_PAD)


class Bottleneck(nn.Module):
    """Pre-activation bottleneck (Sec. 4): BN-ReLU-SAM-BN-ReLU-1x1 conv plus the identity."""

    def __init__(self, sa_type, planes, kernel_size, share_planes=8):
        super().__init__()
        self.bn1 = BatchNorm2d(planes)
        self.sam = SAM(sa_type, planes, planes // 16, planes // 4, share_planes, kernel_size)
        self.bn2 = BatchNorm2d(planes // 4)
        self.conv = conv1x1(planes // 4, planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.sam(self.relu(self.bn1(x)))
        out = self.conv(self.relu(self.bn2(out)))
        return out + x


class SAN(nn.Module):
    """Stem (1x1 conv-BN-ReLU), then five stages of 2x2 max-pool, 1x1 conv widening
    (``conv{i}``), bottlenecks (``layer{i}``), BN-ReLU (``bn{i}``); global average pool and
    ``fc`` (Table 1)."""

    def __init__(self, sa_type, layers, kernels, num_classes=1000):
        super().__init__()
        if len(layers) != 5 or len(kernels) != 5:
            raise ValueError(f"SAN has five stages: got layers {layers} and kernels {kernels}")
        c = STAGE_WIDTHS[0]
        self.conv_in, self.bn_in = conv1x1(3, c, bias=False), BatchNorm2d(c)
        previous = c
        for i, (width, blocks, kernel) in enumerate(zip(STAGE_WIDTHS, layers, kernels)):
            setattr(self, f"conv{i}", conv1x1(previous, width, bias=False))
            setattr(self, f"bn{i}", BatchNorm2d(width))
            setattr(self, f"layer{i}", nn.Sequential(
                *[Bottleneck(sa_type, width, kernel) for _ in range(blocks)]))
            previous = width
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x):
        x = self.relu(self.bn_in(self.conv_in(x)))
        for i in range(len(STAGE_WIDTHS)):
            stage = getattr(self, f"layer{i}")
            x = self.pool(x)
            x = self.relu(getattr(self, f"bn{i}")(stage(getattr(self, f"conv{i}")(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


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
