"""UPANets (Tseng et al., arXiv 2103.08640) ported to PaddlePaddle from the PyTorch model in
``pytorch_impl/models/upanets.py``: the same module tree, names and computation (see that file
for the architecture and the reference's quirks, each reproduced here and marked ``Quirk:``).

Port notes: Paddle's ``Linear`` weight is [in, out] (``common.convert`` transposes it), and the
BatchNorms update their running variance with torch's unbiased batch variance
(``unbiased_var=True``, Paddle momentum 0.9 = torch 0.1), as the model was born in PyTorch.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn

from .. import register_model
from ..layers import BatchNorm1D, BatchNorm2D


def batch_norm_2d(channels):
    return BatchNorm2D(channels, momentum=0.9, unbiased_var=True)


def _mean_chw(x):
    """The mean over every axis but the batch one, one axis at a time from the last: Paddle's
    float32 reductions sum naively, and sums of at most one axis's length lose far fewer
    digits than one sum over C*H*W."""
    for axis in range(x.ndim - 1, 0, -1):
        x = x.mean(axis=axis, keepdim=True)
    return x


def layer_norm_chw(x, eps=1e-5):
    """Layer norm over every axis but the batch one, without affine parameters.

    Computed in the input's dtype with :func:`_mean_chw`, in two passes (the mean, then the
    mean of the squared deviations) after centring twice (the second time by the mean of the
    centred values, which removes what the first mean lost). Paddle's ``F.layer_norm`` kernel
    takes the variance in one pass (E[x^2] - E[x]^2; in float64 4.5e-9 off where torch is
    9e-14), and in float32 it was 10 times less accurate than torch's even on well-centred
    activations; a plain two-pass float32 layer norm was 57 float32 tolerances off on
    activations of mean 10 and std 0.1 (this one: 0.011, torch's float32 kernel 1.8).
    """
    centred = x - _mean_chw(x)
    centred = centred - _mean_chw(centred)
    return centred / paddle.sqrt(_mean_chw(centred * centred) + eps)


class CPA(nn.Layer):
    """Channel Pixel Attention (section 3.1): a linear layer over the channels of every pixel.

    ``out = LN(BN(W x) + sc_x)`` when ``sc_x`` (the conv branch) has that shape, else
    ``LN(BN(W x))``; with a shortcut (``same=True`` or stride 2) a second per-pixel linear + BN
    of the input is added, and at stride 2 the sum is 2x2 average pooled.
    """

    def __init__(self, in_dim, dim, stride=1, same=False):
        super().__init__()
        self.dim, self.stride, self.same = dim, stride, same
        self.cp_ffc = nn.Linear(in_dim, dim)
        self.bn = batch_norm_2d(dim)
        if stride == 2 or same:
            self.cp_ffc_sc = nn.Linear(in_dim, dim)
            self.bn_sc = batch_norm_2d(dim)
            if stride == 2:
                self.avgpool = nn.AvgPool2D(2)

    @staticmethod
    def _pixel_linear(linear, x):
        return linear(x.transpose([0, 2, 3, 1])).transpose([0, 3, 1, 2])

    def forward(self, x, sc_x):
        out = self.bn(self._pixel_linear(self.cp_ffc, x))
        if out.shape == sc_x.shape:
            out = layer_norm_chw(sc_x + out)
        else:
            out = layer_norm_chw(out)
            x = sc_x  # Quirk: with mismatched shapes the shortcut projects sc_x, not the input.
        if self.stride == 2 or self.same:
            out = out + self.bn_sc(self._pixel_linear(self.cp_ffc_sc, x))
            if self.same:
                return out  # Quirk: same=True returns before the stride-2 pooling.
            out = self.avgpool(out)
        return out


class SPA(nn.Layer):
    """Spatial Pixel Attention (section 3.3): a linear layer from the img*img pixels of every
    channel to out*out values, returned as an out x out map."""

    def __init__(self, img, out=1):
        super().__init__()
        self.sp_ffc = nn.Sequential(nn.Linear(img ** 2, out ** 2))

    def forward(self, x):
        x = self.sp_ffc(x.flatten(2))
        side = int(x.shape[2] ** 0.5)
        return x.reshape([x.shape[0], x.shape[1], side, side])


class UPABlock(nn.Layer):
    """A UPA block (section 3.2): conv3x3 (2x planes)-BN-ReLU-conv3x3-BN-ReLU, merged with CPA of
    the block's input; ``cat=True`` concatenates the result to the input (dense connection)."""

    def __init__(self, in_planes, planes, stride=1, cat=False, same=False, w=2):
        super().__init__()
        self.cat = cat
        # Quirk: the convolutions never stride; a stride-2 block downsamples in CPA's avgpool.
        self.cnn = nn.Sequential(
            nn.Conv2D(in_planes, planes * w, 3, padding=1, bias_attr=False),
            batch_norm_2d(planes * w),
            nn.ReLU(),
            nn.Conv2D(planes * w, planes, 3, padding=1, bias_attr=False),
            batch_norm_2d(planes),
            nn.ReLU(),
        )
        self.att = CPA(in_planes, planes, stride, same=same)

    def forward(self, x):
        out = self.att(x, self.cnn(x))
        return paddle.concat([x, out], 1) if self.cat else out


def stage_layout(in_planes, planes, num_blocks, stride):
    """``[(in_planes, planes, stride, cat, same)]`` of one stage, as the reference builds it.

    Quirk: the reference appends to the list of strides it is iterating over when it builds the
    first block, so a stage has ``num_blocks + 1`` blocks: the first, then ``num_blocks`` dense
    blocks of ``planes // num_blocks`` channels each; a stage outputs ``2 * planes`` channels.
    """
    growth = planes // num_blocks
    first = (planes, planes, 1, False, True) if stride == 1 else (in_planes, planes, stride, False, False)
    layout, width = [first], planes
    for _ in range(num_blocks):
        layout.append((width, growth, 1, True, False))
        width += growth
    return layout, width


class UPANets(nn.Layer):
    """UPANets(filters, num_classes, blocks, img_size): ``4 * blocks`` dense blocks per stage."""

    def __init__(self, filters=16, num_classes=10, blocks=1, img_size=32):
        super().__init__()
        f, w = filters, 2
        self.root = nn.Sequential(
            nn.Conv2D(3, f * w, 3, padding=1, bias_attr=False),
            batch_norm_2d(f * w),
            nn.ReLU(),
            nn.Conv2D(f * w, f, 3, padding=1, bias_attr=False),
            batch_norm_2d(f),
            nn.ReLU(),
        )
        self.emb = CPA(3, f, same=True)
        in_planes = f
        for i, (mult, stride) in enumerate(zip((1, 2, 4, 8), (1, 2, 2, 2)), start=1):
            layout, in_planes = stage_layout(in_planes, f * mult, 4 * blocks, stride)
            setattr(self, f"layer{i}", nn.Sequential(*[UPABlock(*spec[:3], cat=spec[3], same=spec[4])
                                                        for spec in layout]))
        for i, side in enumerate((img_size, img_size, img_size // 2, img_size // 4, img_size // 8)):
            setattr(self, f"spa{i}", SPA(side))
        self.linear = nn.Linear(f * 31, num_classes)
        self.bn = BatchNorm1D(f * 31, momentum=0.9, unbiased_var=True)

    def forward(self, x):
        out0 = self.emb(x, self.root(x))
        out1 = self.layer1(out0)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        feats = [layer_norm_chw(o.mean((2, 3), keepdim=True) + spa(o))
                 for o, spa in zip((out0, out1, out2, out3, out4),
                                   (self.spa0, self.spa1, self.spa2, self.spa3, self.spa4))]
        # Quirk: the head concatenates the deepest stage first.
        out = paddle.concat(feats[::-1], 1).flatten(1)
        return self.linear(self.bn(out))


@register_model
def upanets16(num_classes=10, img_size=32, blocks=1):
    return UPANets(16, num_classes, blocks, img_size)


@register_model
def upanets32(num_classes=10, img_size=32, blocks=1):
    return UPANets(32, num_classes, blocks, img_size)


@register_model
def upanets64(num_classes=10, img_size=32, blocks=1):
    return UPANets(64, num_classes, blocks, img_size)
