"""Residual Attention Network (Wang et al., "Residual Attention Network for Image
Classification", CVPR 2017, arXiv 1704.06904), native MXNet Gluon.

The network is the public Gluon implementation's (haoxintong/ResidualAttentionNetwork-Gluon,
``net/attention_block.py`` and ``net/attention_net.py``), with its class and attribute names,
so that a ``.params`` file its ``save_parameters`` wrote loads here as it is: pre-activation
bottleneck units (He et al., arXiv 1603.05027; the model zoo's ``BottleneckV2`` with its
``bn1..bn3``, ``conv1..conv3``, ``downsample``) and Attention Modules (``AttentionBlock``:
``pre``, ``trunk_branch``, ``mask_branch``, ``post``) whose soft mask branch (``MaskBlock``) is
a bottom-up / top-down hourglass (paper Sec. 3.3, Fig. 2). A depth is a spec
``([p, t, r], [modules in stage 1, 2, 3])`` (Sec. 4.1): 36 m + 20 layers with
``p, t, r = 1, 2, 1`` and m modules per stage.

Two stems: ImageNet (224x224; 7x7/2 conv 64, max-pool, stages at 56/28/14 with 256/512/1024
channels, three 2048-channel units, Table 2) and CIFAR (32x32; 3x3 conv 32, stages at 32/16/8
with 128/256/512 channels, three 1024-channel units starting with stride 2).

Where this differs from the original, numerics stay the same: every layer is given its input
channels (the original infers them at the first call), so the parameter shapes are known
before any forward pass; and the mask branch up-samples to the size of the tensor it came
from (``BilinearResize2D`` with ``mode='like'``, align_corners=True) instead of a size fixed
at construction, so any input size that survives the strides works.

Parameter counts (``parity_tests/test_paper_tables.py``): every depth has exactly the original
code's count, and Attention-56 and -92 exactly that of the authors' Caffe prototxts
(fwang91/residual-attention-network, ``Attention-{56,92}-deploy.prototxt``), whose layer shapes
are these: 31,810,728 and 52,466,344 learnable parameters with 1000 classes, BN scale and
shift included. The paper reports 31.9M and 51.3M (Table 4), 0.09M more and 1.17M (2.2%) less;
no way of counting gives both (with the BN running statistics Attention-56 has 31.9M but
Attention-92 52.6M; without BN, or without the classifier, both are further off). The paper
does not describe its CIFAR networks (Attention-92 1.9M, -236 5.1M, -452 8.6M); the CIFAR
variant here is the original code's (after tengshaofeng's 32x32 network: 128/256/512-channel
stages, a 1024-channel head), 4.6 to 6.7 times those sizes.
"""
import numpy as np
from mxnet.gluon import nn

from common.attention_arch import ATTENTION_SPECS, NUM_STAGES, WIDTHS

from .. import kernels, register_model


class BottleneckV2(nn.HybridBlock):
    """Pre-activation bottleneck unit (arXiv 1603.05027), the model zoo's ``BottleneckV2``:
    BN-ReLU-1x1, BN-ReLU-3x3 (stride), BN-ReLU-1x1 to ``channels``, plus the input, or a
    strided 1x1 projection of the pre-activated input when the shape changes."""

    def __init__(self, in_channels, channels, stride=1, **kwargs):
        super().__init__(**kwargs)
        mid = channels // 4
        self.bn1 = nn.BatchNorm(in_channels=in_channels)
        self.conv1 = nn.Conv2D(mid, 1, use_bias=False, in_channels=in_channels)
        self.bn2 = nn.BatchNorm(in_channels=mid)
        self.conv2 = nn.Conv2D(mid, 3, stride, 1, use_bias=False, in_channels=mid)
        self.bn3 = nn.BatchNorm(in_channels=mid)
        self.conv3 = nn.Conv2D(channels, 1, use_bias=False, in_channels=mid)
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Conv2D(channels, 1, stride, use_bias=False, in_channels=in_channels)
        else:
            self.downsample = None

    def hybrid_forward(self, F, x):
        pre = F.Activation(self.bn1(x), act_type="relu")
        shortcut = self.downsample(pre) if self.downsample is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.Activation(self.bn2(out), act_type="relu"))
        out = self.conv3(F.Activation(self.bn3(out), act_type="relu"))
        return out + shortcut


def units(channels, count):
    """``count`` identity bottleneck units of width ``channels``, in sequence."""
    seq = nn.HybridSequential()
    for _ in range(count):
        seq.add(BottleneckV2(channels, channels))
    return seq


class UpSample(nn.HybridBlock):
    """Bilinear up-sampling (align_corners=True) of ``x`` to the height and width of
    ``like``: the original's ``contrib.BilinearResize2D(x, like, mode='like')``. On the CPU,
    where a C++ compiler is present, one fused operator (``gluon_impl/kernels/resize.cc``:
    that kernel's weights and grouping, a plane per thread, the gradient gathered; the six
    up-samplings of Attention-56 CIFAR at batch 16 in inference take 1.8 ms, against 21 for
    the original's kernel and 14 for the matrix products). Elsewhere as one matrix product
    per axis with that kernel's interpolation weights (float32 source positions and
    weights, as its CPU kernel computes them; in numpy
    ``common.attention_arch.bilinear_matrix``). The same values to round-off (float64 2e-16,
    float32 1-3e-7 relative); MXNet 1.9.1's CPU kernel is serial and its backward pass a
    scatter, and the six up-samplings of Attention-56 CIFAR at batch 32, forward and
    backward, take 46 ms instead of 259. A hybridized graph has no shapes, so the matrices
    are built in the graph from the sizes of ``x`` and ``like``, in float32, then cast to the
    block's dtype (which :meth:`cast` records)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dtype = "float32"

    def cast(self, dtype):
        self.dtype = np.dtype(dtype).name
        super().cast(dtype)

    def _interpolation(self, F, x, like, axis):
        """``[size of like, size of x]`` along ``axis``: row ``i`` weighs the two inputs
        around float32 position ``i * (in - 1) / (out - 1)``."""
        source = F.cast(F.contrib.arange_like(x, axis=axis), "float32")
        target = F.cast(F.contrib.arange_like(like, axis=axis), "float32")
        last_in, last_out = F.max(source), F.max(target)
        scale = F.broadcast_div(last_in, F.maximum(last_out, F.ones_like(last_out)))
        position = F.broadcast_mul(target, scale)
        low = F.floor(position)
        high = F.broadcast_minimum(low + 1, last_in)
        weight_high = F.reshape(F.cast(position - low, self.dtype), (-1, 1))
        source = F.reshape(source, (1, -1))

        def at(index):
            return F.cast(F.broadcast_equal(F.reshape(index, (-1, 1)), source), self.dtype)
        return F.BlockGrad(F.broadcast_mul(at(low), 1 - weight_high)
                           + F.broadcast_mul(at(high), weight_high))

    def hybrid_forward(self, F, x, like):
        if kernels.for_data("resize", F, x):
            return F.bilinear_resize_like(x, like)
        rows, cols = self._interpolation(F, x, like, 2), self._interpolation(F, x, like, 3)
        out = F.transpose(F.dot(x, cols, transpose_b=True), axes=(0, 1, 3, 2))
        return F.transpose(F.dot(out, rows, transpose_b=True), axes=(0, 1, 3, 2))


class MaskBlock(nn.HybridBlock):
    """Soft mask branch of an Attention Module in ``stage`` (Sec. 3.3, Fig. 2).

    Bottom-up: for each level k = stage..3, max-pool 3/2/1 (``down_sample_k``) then ``r``
    units (``down_res_unit_k``); levels below the last also feed a skip unit
    (``skip_connection_k``). Top-down: for k = 3..stage, ``r`` units (``up_res_unit_k``),
    bilinear up-sampling to the size of level k's input (``up_sample_k``), plus the skip of
    the level above. Then BN-ReLU-1x1-BN-ReLU-1x1 and a sigmoid give a mask in (0, 1)
    (``output``).
    """

    def __init__(self, channels, stage, r, **kwargs):
        super().__init__(**kwargs)
        self.levels = tuple(range(stage, NUM_STAGES + 1))
        for k in self.levels:
            setattr(self, f"down_sample_{k}", nn.MaxPool2D(3, 2, 1))
            setattr(self, f"down_res_unit_{k}", units(channels, r))
            if k < NUM_STAGES:
                setattr(self, f"skip_connection_{k}", BottleneckV2(channels, channels))
            setattr(self, f"up_res_unit_{k}", units(channels, r))
            setattr(self, f"up_sample_{k}", UpSample())
        self.output = nn.HybridSequential()
        self.output.add(nn.BatchNorm(in_channels=channels), nn.Activation("relu"),
                        nn.Conv2D(channels, 1, use_bias=False, in_channels=channels),
                        nn.BatchNorm(in_channels=channels), nn.Activation("relu"),
                        nn.Conv2D(channels, 1, use_bias=False, in_channels=channels),
                        nn.Activation("sigmoid"))

    def hybrid_forward(self, F, x):
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


class AttentionBlock(nn.HybridBlock):
    """Attention Module (Sec. 3.1-3.2): ``p`` pre units, then a trunk of ``t`` units and a
    soft mask M in (0, 1); attention residual learning outputs (1 + M) * trunk; then ``p``
    post units. The trunk is computed before the mask, as this project always did (the
    original computes the mask first): the two orders are the same computation, but the
    frameworks' backward passes then sum the shared input's gradient in another order, a
    round-off difference that a short unstable training run amplifies (measured: the main
    job's first epoch identical to every printed digit, its accuracy after two epochs
    0.7917 in either order here)."""

    def __init__(self, channels, stage, p, t, r, **kwargs):
        super().__init__(**kwargs)
        self.pre = units(channels, p)
        self.trunk_branch = units(channels, t)
        self.mask_branch = MaskBlock(channels, stage, r)
        self.post = units(channels, p)

    def hybrid_forward(self, F, x):
        x = self.pre(x)
        return self.post(self.trunk_branch(x) * (1 + self.mask_branch(x)))


class AttentionNet(nn.HybridBlock):
    """Residual Attention Network of ``depth`` (a key of :data:`ATTENTION_SPECS`) for the
    ``variant`` 'imagenet' or 'cifar': ``features`` (stem, three stages of a projection unit
    and attention modules, three head units, BN-ReLU, global average pool, flatten) and the
    ``output`` classifier."""

    def __init__(self, depth, variant="imagenet", num_classes=1000, **kwargs):
        super().__init__(**kwargs)
        if depth not in ATTENTION_SPECS:
            raise ValueError(f"no Attention-{depth}; depths: {sorted(ATTENTION_SPECS)}")
        (p, t, r), modules = ATTENTION_SPECS[depth]
        stem, widths, head = WIDTHS[variant]
        self.features = nn.HybridSequential()
        if variant == "imagenet":
            self.features.add(nn.Conv2D(stem, 7, 2, 3, use_bias=False, in_channels=3),
                              nn.BatchNorm(in_channels=stem), nn.Activation("relu"),
                              nn.MaxPool2D(3, 2, 1))
        else:
            self.features.add(nn.Conv2D(stem, 3, 1, 1, use_bias=False, in_channels=3),
                              nn.BatchNorm(in_channels=stem), nn.Activation("relu"))
        in_channels = stem
        for stage, (width, count) in enumerate(zip(widths, modules), start=1):
            self.features.add(BottleneckV2(in_channels, width, 1 if stage == 1 else 2))
            for _ in range(count):
                self.features.add(AttentionBlock(width, stage, p, t, r))
            in_channels = width
        self.features.add(BottleneckV2(in_channels, head, 2),
                          BottleneckV2(head, head), BottleneckV2(head, head),
                          nn.BatchNorm(in_channels=head), nn.Activation("relu"),
                          nn.GlobalAvgPool2D(), nn.Flatten())
        self.output = nn.Dense(num_classes, in_units=head)

    def hybrid_forward(self, F, x):
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
