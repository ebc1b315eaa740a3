"""Residual Attention Network (Wang et al., arXiv 1704.06904), the PyTorch port of the native
Gluon model in :mod:`gluon_impl.models.attention`.

The module tree, class and attribute names are the Gluon ones, which are the original Gluon
code's (haoxintong/ResidualAttentionNetwork-Gluon), so a ``save_parameters`` file of the
original or of this project loads after common/convert.py's naming rules alone. What the port does to compute exactly what
MXNet computes (../shared/docs/framework-semantics.md):

* BatchNorm updates its running variance with the biased batch variance
  (``pytorch_impl.layers.BatchNorm2d(biased_var=True)``), momentum 0.1 = Gluon's 0.9, with
  MXNet's float32 rounding of the momentum;
* ``BilinearResize2D`` is align_corners=True with interpolation weights computed in float32
  (:func:`bilinear_resize_like`), which float64 parity can see;
* Gluon's Dense flattens its input: here ``features`` ends with an explicit ``Flatten``.

Parameter counts are those of the Gluon model, explained in :mod:`gluon_impl.models.attention`.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.attention_arch import ATTENTION_SPECS, NUM_STAGES, WIDTHS, bilinear_matrix

from .. import register_model
from ..layers import BatchNorm2d

#: MXNet's BatchNorm takes its momentum as a C float (0.9 rounded to float32, which float64
#: parity of the running statistics sees: 1 - 0.9f = 0.100000024 in torch's convention) and
#: its eps as a double (1e-5 exactly; measured).
GLUON_BN_MOMENTUM = 1 - float(np.float32(0.9))


def batch_norm(channels):
    """Gluon's BatchNorm (eps 1e-5, momentum 0.9, biased running variance) in torch terms."""
    return BatchNorm2d(channels, eps=1e-5, momentum=GLUON_BN_MOMENTUM, biased_var=True)


@torch.compiler.disable
def interpolation_matrices(size_in, size_out):
    """:func:`common.attention_arch.bilinear_matrix` of both axes (``size_in`` and
    ``size_out`` are (height, width) pairs) as float64 CPU tensors. torch.compile calls it
    outside the graph (one graph break per resize): the cached matrices are read-only NumPy
    arrays, which dynamo fails to take into a graph ("Expected np.nditer base": torch 2.13
    with NumPy 1.23 at a matrix's second use, torch 2.11 with NumPy 2.5 at its first), so no
    array ever reaches it."""
    return tuple(torch.tensor(bilinear_matrix(i, o)) for i, o in zip(size_in, size_out))


def bilinear_resize_like(x, like):
    """Resize ``x`` (N, C, H, W) to the height and width of ``like`` as MXNet's
    ``contrib.BilinearResize2D(x, like, mode='like')`` does: separable align_corners=True
    interpolation, one matrix product per axis (:func:`interpolation_matrices`)."""
    rows, cols = interpolation_matrices(tuple(x.shape[-2:]), tuple(like.shape[-2:]))
    return torch.matmul(torch.matmul(rows.to(x), x), cols.to(x).t())


class BottleneckV2(nn.Module):
    """Pre-activation bottleneck unit (arXiv 1603.05027), Gluon's model-zoo ``BottleneckV2``:
    BN-ReLU-1x1, BN-ReLU-3x3 (stride), BN-ReLU-1x1 to ``channels``, plus the input, or a
    strided 1x1 projection of the pre-activated input when the shape changes."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        mid = channels // 4
        self.bn1 = batch_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn2 = batch_norm(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn3 = batch_norm(mid)
        self.conv3 = nn.Conv2d(mid, channels, 1, bias=False)
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Conv2d(in_channels, channels, 1, stride, bias=False)
        else:
            self.downsample = None

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        shortcut = self.downsample(pre) if self.downsample is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


def units(channels, count):
    """``count`` identity bottleneck units of width ``channels``, in sequence."""
    return nn.Sequential(*(BottleneckV2(channels, channels) for _ in range(count)))


class UpSample(nn.Module):
    """MXNet's bilinear up-sampling of ``x`` to the height and width of ``like``
    (:func:`bilinear_resize_like`)."""

    def forward(self, x, like):
        return bilinear_resize_like(x, like)


class MaskBlock(nn.Module):
    """Soft mask branch of an Attention Module in ``stage`` (Sec. 3.3, Fig. 2).

    Bottom-up: for each level k = stage..3, max-pool 3/2/1 (``down_sample_k``) then ``r``
    units (``down_res_unit_k``); levels below the last also feed a skip unit
    (``skip_connection_k``). Top-down: for k = 3..stage, ``r`` units (``up_res_unit_k``),
    bilinear up-sampling to the size of level k's input (``up_sample_k``), plus the skip of
    the level above. Then BN-ReLU-1x1-BN-ReLU-1x1 and a sigmoid give a mask in (0, 1)
    (``output``).
    """

    def __init__(self, channels, stage, r):
        super().__init__()
        self.levels = tuple(range(stage, NUM_STAGES + 1))
        for k in self.levels:
            setattr(self, f"down_sample_{k}", nn.MaxPool2d(3, 2, 1))
            setattr(self, f"down_res_unit_{k}", units(channels, r))
            if k < NUM_STAGES:
                setattr(self, f"skip_connection_{k}", BottleneckV2(channels, channels))
            setattr(self, f"up_res_unit_{k}", units(channels, r))
            setattr(self, f"up_sample_{k}", UpSample())
        self.output = nn.Sequential(
            batch_norm(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False),
            batch_norm(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False),
            nn.Sigmoid())

    def forward(self, x):
        level_inputs, skips = [], []
        for k in self.levels:
            level_inputs.append(x)
            x = getattr(self, f"down_res_unit_{k}")(getattr(self, f"down_sample_{k}")(x))
            if k < NUM_STAGES:
                skips.append(getattr(self, f"skip_connection_{k}")(x))
        for k in reversed(self.levels):
            x = getattr(self, f"up_sample_{k}")(getattr(self, f"up_res_unit_{k}")(x),
                                                level_inputs.pop())
            if skips:
                x = x + skips.pop()
        return self.output(x)


class AttentionBlock(nn.Module):
    """Attention Module (Sec. 3.1-3.2): ``p`` pre units, then a trunk of ``t`` units and a
    soft mask M in (0, 1); attention residual learning outputs (1 + M) * trunk; then ``p``
    post units. The trunk is computed before the mask, as this project always did (the
    original computes the mask first): the two orders are the same computation, but the
    frameworks' backward passes then sum the shared input's gradient in another order, a
    round-off difference that a short unstable training run amplifies (measured: the main
    job's first epoch identical to every printed digit, its accuracy after two epochs
    0.7917 in either order here)."""

    def __init__(self, channels, stage, p, t, r):
        super().__init__()
        self.pre = units(channels, p)
        self.trunk_branch = units(channels, t)
        self.mask_branch = MaskBlock(channels, stage, r)
        self.post = units(channels, p)

    def forward(self, x):
        x = self.pre(x)
        return self.post(self.trunk_branch(x) * (1 + self.mask_branch(x)))


class AttentionNet(nn.Module):
    """Residual Attention Network of ``depth`` (a key of :data:`ATTENTION_SPECS`) for the
    ``variant`` 'imagenet' or 'cifar': ``features`` (stem, three stages of a projection unit
    and attention modules, three head units, BN-ReLU, global average pool, flatten) and the
    ``output`` classifier."""

    def __init__(self, depth, variant="imagenet", num_classes=1000):
        super().__init__()
        if depth not in ATTENTION_SPECS:
            raise ValueError(f"no Attention-{depth}; depths: {sorted(ATTENTION_SPECS)}")
        (p, t, r), modules = ATTENTION_SPECS[depth]
        stem, widths, head = WIDTHS[variant]
        if variant == "imagenet":
            layers = [nn.Conv2d(3, stem, 7, 2, 3, bias=False), batch_norm(stem), nn.ReLU(),
                      nn.MaxPool2d(3, 2, 1)]
        else:
            layers = [nn.Conv2d(3, stem, 3, 1, 1, bias=False), batch_norm(stem), nn.ReLU()]
        in_channels = stem
        for stage, (width, count) in enumerate(zip(widths, modules), start=1):
            layers.append(BottleneckV2(in_channels, width, 1 if stage == 1 else 2))
            layers += [AttentionBlock(width, stage, p, t, r) for _ in range(count)]
            in_channels = width
        layers += [BottleneckV2(in_channels, head, 2), BottleneckV2(head, head),
                   BottleneckV2(head, head), batch_norm(head), nn.ReLU(),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.output = nn.Linear(head, num_classes)

    def forward(self, x):
        return self.output(self.features(x))


def _register(depth, variant):
    name = f"attention{depth}" + ("_cifar" if variant == "cifar" else "")
    default_classes = 10 if variant == "cifar" else 1000

    def constructor(num_classes=default_classes, **kwargs):
        return AttentionNet(depth, variant, num_classes, **kwargs)

    constructor.__name__ = name
    constructor.__doc__ = f"Attention-{depth} ({variant} variant)."
    register_model(constructor)


for _depth in ATTENTION_SPECS:
    for _variant in WIDTHS:
        _register(_depth, _variant)
