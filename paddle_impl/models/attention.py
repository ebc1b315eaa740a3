"""Residual Attention Network (Wang et al., "Residual Attention Network for Image
Classification", CVPR 2017, arXiv 1704.06904), the PaddlePaddle port of the native Gluon model
in :mod:`gluon_impl.models.attention` (the architecture, the original code's names and the
parameter counts are explained there).

The module tree, class and attribute names are the Gluon ones, so a ``save_parameters`` file
of the original Gluon code or of this project loads after common/convert.py's naming rules
alone (``gamma``/``beta`` -> ``weight``/``bias``, ``running_mean``/``running_var`` ->
``_mean``/``_variance``, the classifier's weight transposed). What the port does to compute
what MXNet computes (../shared/docs/framework-semantics.md):

* BatchNorm has MXNet's semantics (:class:`paddle_impl.layers.BatchNorm2D`): momentum 0.9
  (keep 90%) as a float32, the running variance updated with the biased batch variance,
  eps 1e-5; a float64 training step is computed from ops, since Paddle's kernel takes eps as a
  float32, which float64 parity sees;
* ``BilinearResize2D`` is align_corners=True with interpolation weights computed in float32,
  as one matrix product per axis (:func:`bilinear_resize_like`);
* Gluon's Dense flattens its input: here ``features`` ends with an explicit ``Flatten``;
  Paddle's ``Linear`` weight is [in, out] (the conversion transposes it).
"""
import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from common.attention_arch import ATTENTION_SPECS, NUM_STAGES, WIDTHS, bilinear_matrix

from .. import register_model
from ..layers import BatchNorm2D


#: MXNet's BatchNorm takes its momentum as a C float (float64 parity of the running statistics
#: sees 0.9 against 0.9f: Paddle's kernel rounds it so, its float64 steps from ops do not) and
#: its eps as a double.
GLUON_BN_MOMENTUM = float(np.float32(0.9))


def batch_norm(channels):
    """Gluon's BatchNorm (eps 1e-5, momentum 0.9f, biased running variance) in Paddle."""
    return BatchNorm2D(channels, momentum=GLUON_BN_MOMENTUM, epsilon=1e-5)


def bilinear_resize_like(x, like):
    """Resize ``x`` (N, C, H, W) to the height and width of ``like`` as MXNet's
    ``contrib.BilinearResize2D(x, like, mode='like')`` does: separable align_corners=True
    interpolation with MXNet's float32 weights, one matrix product per axis
    (:func:`common.attention_arch.bilinear_matrix`)."""
    (h_in, w_in), (h_out, w_out) = x.shape[-2:], like.shape[-2:]
    rows = paddle.to_tensor(bilinear_matrix(h_in, h_out), dtype=x.dtype, place=x.place)
    cols = paddle.to_tensor(bilinear_matrix(w_in, w_out), dtype=x.dtype, place=x.place)
    return paddle.matmul(paddle.matmul(rows, x), cols, transpose_y=True)


class BottleneckV2(nn.Layer):
    """Pre-activation bottleneck unit (arXiv 1603.05027), Gluon's model-zoo ``BottleneckV2``:
    BN-ReLU-1x1, BN-ReLU-3x3 (stride), BN-ReLU-1x1 to ``channels``, plus the input, or a
    strided 1x1 projection of the pre-activated input when the shape changes."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        mid = channels // 4
        self.bn1 = batch_norm(in_channels)
        self.conv1 = nn.Conv2D(in_channels, mid, 1, bias_attr=False)
        self.bn2 = batch_norm(mid)
        self.conv2 = nn.Conv2D(mid, mid, 3, stride, 1, bias_attr=False)
        self.bn3 = batch_norm(mid)
        self.conv3 = nn.Conv2D(mid, channels, 1, bias_attr=False)
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Conv2D(in_channels, channels, 1, stride, bias_attr=False)
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


class UpSample(nn.Layer):
    """MXNet's bilinear up-sampling of ``x`` to the height and width of ``like``
    (:func:`bilinear_resize_like`)."""

    def forward(self, x, like):
        return bilinear_resize_like(x, like)


class MaskBlock(nn.Layer):
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
            setattr(self, f"down_sample_{k}", nn.MaxPool2D(3, 2, 1))
            setattr(self, f"down_res_unit_{k}", units(channels, r))
            if k < NUM_STAGES:
                setattr(self, f"skip_connection_{k}", BottleneckV2(channels, channels))
            setattr(self, f"up_res_unit_{k}", units(channels, r))
            setattr(self, f"up_sample_{k}", UpSample())
        self.output = nn.Sequential(
            batch_norm(channels), nn.ReLU(), nn.Conv2D(channels, channels, 1, bias_attr=False),
            batch_norm(channels), nn.ReLU(), nn.Conv2D(channels, channels, 1, bias_attr=False),
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


class AttentionBlock(nn.Layer):
    """Attention Module (Sec. 3.1-3.2): ``p`` pre units, then a trunk of ``t`` units and a
    soft mask M in (0, 1); attention residual learning outputs (1 + M) * trunk; then ``p``
    post units. The trunk is computed before the mask, as in the Gluon model (the order
    decides how the backward pass sums the shared input's gradient, at round-off)."""

    def __init__(self, channels, stage, p, t, r):
        super().__init__()
        self.pre = units(channels, p)
        self.trunk_branch = units(channels, t)
        self.mask_branch = MaskBlock(channels, stage, r)
        self.post = units(channels, p)

    def forward(self, x):
        x = self.pre(x)
        return self.post(self.trunk_branch(x) * (1 + self.mask_branch(x)))


class AttentionNet(nn.Layer):
    """Residual Attention Network of ``depth`` (a key of
    :data:`common.attention_arch.ATTENTION_SPECS`) for the ``variant`` 'imagenet' or 'cifar':
    ``features`` (stem, three stages of a projection unit and attention modules, three head
    units, BN-ReLU, global average pool, flatten) and the ``output`` classifier (Sec. 4.1,
    Table 2)."""

    def __init__(self, depth, variant="imagenet", num_classes=1000):
        super().__init__()
        if depth not in ATTENTION_SPECS:
            raise ValueError(f"no Attention-{depth}; depths: {sorted(ATTENTION_SPECS)}")
        (p, t, r), modules = ATTENTION_SPECS[depth]
        stem, widths, head = WIDTHS[variant]
        if variant == "imagenet":
            layers = [nn.Conv2D(3, stem, 7, 2, 3, bias_attr=False), batch_norm(stem), nn.ReLU(),
                      nn.MaxPool2D(3, 2, 1)]
        else:
            layers = [nn.Conv2D(3, stem, 3, 1, 1, bias_attr=False), batch_norm(stem), nn.ReLU()]
        in_channels = stem
        for stage, (width, count) in enumerate(zip(widths, modules), start=1):
            layers.append(BottleneckV2(in_channels, width, 1 if stage == 1 else 2))
            layers += [AttentionBlock(width, stage, p, t, r) for _ in range(count)]
            in_channels = width
        layers += [BottleneckV2(in_channels, head, 2), BottleneckV2(head, head),
                   BottleneckV2(head, head), batch_norm(head), nn.ReLU(),
                   nn.AdaptiveAvgPool2D(1), nn.Flatten()]
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
