"""UPANets (Tseng et al., arXiv 2103.08640) ported to MXNet Gluon from the PyTorch model in
``pytorch_impl/models/upanets.py``: the same module tree, names and computation (see that file
for the architecture and the reference's quirks, each reproduced here and marked ``Quirk:``).

Port notes: every block is hybridizable. The BatchNorms update their running variance with
torch's unbiased batch variance (``gluon_impl.layers.BatchNorm(unbiased_var=True)``; trained
hybridized, with ``gluon_impl.layers.TorchRunningVariance``), momentum 0.9 = torch 0.1. CPA compares the shapes of its two inputs; a
hybridized graph has no shapes, so there it takes the matching-shape path, the only one the
network uses (call a lone CPA with mismatched shapes imperatively).
"""
import mxnet as mx
from mxnet.gluon import nn

from .. import register_model
from ..layers import BatchNorm, layer_norm_chw, spatial_means


def batch_norm(channels):
    return BatchNorm(channels, momentum=0.9, unbiased_var=True)


def conv_bn_relu(in_channels, channels):
    return [nn.Conv2D(channels, 3, padding=1, use_bias=False, in_channels=in_channels),
            batch_norm(channels), nn.Activation("relu")]


class CPA(nn.HybridBlock):
    """Channel Pixel Attention (section 3.1): a linear layer over the channels of every pixel.

    ``out = LN(BN(W x) + sc_x)`` when ``sc_x`` (the conv branch) has that shape, else
    ``LN(BN(W x))``; with a shortcut (``same=True`` or stride 2) a second per-pixel linear + BN
    of the input is added, and at stride 2 the sum is 2x2 average pooled.
    """

    def __init__(self, in_dim, dim, stride=1, same=False):
        super().__init__()
        self.dim, self.stride, self.same = dim, stride, same
        self.cp_ffc = nn.Dense(dim, in_units=in_dim, flatten=False)
        self.bn = batch_norm(dim)
        if stride == 2 or same:
            self.cp_ffc_sc = nn.Dense(dim, in_units=in_dim, flatten=False)
            self.bn_sc = batch_norm(dim)
            if stride == 2:
                self.avgpool = nn.AvgPool2D(2)

    @staticmethod
    def _pixel_linear(F, linear, x):
        return F.transpose(linear(F.transpose(x, axes=(0, 2, 3, 1))), axes=(0, 3, 1, 2))

    def hybrid_forward(self, F, x, sc_x):
        out = self.bn(self._pixel_linear(F, self.cp_ffc, x))
        if F is not mx.nd or out.shape == sc_x.shape:
            out = layer_norm_chw(F, sc_x + out)
        else:
            out = layer_norm_chw(F, out)
            x = sc_x  # Quirk: with mismatched shapes the shortcut projects sc_x, not the input.
        if self.stride == 2 or self.same:
            out = out + self.bn_sc(self._pixel_linear(F, self.cp_ffc_sc, x))
            if self.same:
                return out  # Quirk: same=True returns before the stride-2 pooling.
            out = self.avgpool(out)
        return out


class SPA(nn.HybridBlock):
    """Spatial Pixel Attention (section 3.3): a linear layer from the img*img pixels of every
    channel to out*out values, returned as an out x out map."""

    def __init__(self, img, out=1):
        super().__init__()
        self.out = out
        self.sp_ffc = nn.HybridSequential()
        self.sp_ffc.add(nn.Dense(out ** 2, in_units=img ** 2, flatten=False))

    def hybrid_forward(self, F, x):
        x = self.sp_ffc(F.reshape(x, (0, 0, -1)))
        return F.reshape(x, (0, 0, self.out, self.out))


class UPABlock(nn.HybridBlock):
    """A UPA block (section 3.2): conv3x3 (2x planes)-BN-ReLU-conv3x3-BN-ReLU, merged with CPA of
    the block's input; ``cat=True`` concatenates the result to the input (dense connection)."""

    def __init__(self, in_planes, planes, stride=1, cat=False, same=False, w=2):
        super().__init__()
        self.cat = cat
        # Quirk: the convolutions never stride; a stride-2 block downsamples in CPA's avgpool.
        self.cnn = nn.HybridSequential()
        self.cnn.add(*conv_bn_relu(in_planes, planes * w), *conv_bn_relu(planes * w, planes))
        self.att = CPA(in_planes, planes, stride, same=same)

    def hybrid_forward(self, F, x):
        out = self.att(x, self.cnn(x))
        return F.concat(x, out, dim=1) if self.cat else out


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


class UPANets(nn.HybridBlock):
    """UPANets(filters, num_classes, blocks, img_size): ``4 * blocks`` dense blocks per stage."""

    def __init__(self, filters=16, num_classes=10, blocks=1, img_size=32):
        super().__init__()
        f, w = filters, 2
        self.root = nn.HybridSequential()
        self.root.add(*conv_bn_relu(3, f * w), *conv_bn_relu(f * w, f))
        self.emb = CPA(3, f, same=True)
        in_planes = f
        for i, (mult, stride) in enumerate(zip((1, 2, 4, 8), (1, 2, 2, 2)), start=1):
            layout, in_planes = stage_layout(in_planes, f * mult, 4 * blocks, stride)
            stage = nn.HybridSequential()
            stage.add(*[UPABlock(*spec[:3], cat=spec[3], same=spec[4]) for spec in layout])
            setattr(self, f"layer{i}", stage)
        for i, side in enumerate((img_size, img_size, img_size // 2, img_size // 4, img_size // 8)):
            setattr(self, f"spa{i}", SPA(side))
        self.linear = nn.Dense(num_classes, in_units=f * 31)
        self.bn = batch_norm(f * 31)

    def hybrid_forward(self, F, x):
        out0 = self.emb(x, self.root(x))
        out1 = self.layer1(out0)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        feats = [layer_norm_chw(F, spatial_means(F, o) + spa(o))
                 for o, spa in zip((out0, out1, out2, out3, out4),
                                   (self.spa0, self.spa1, self.spa2, self.spa3, self.spa4))]
        # Quirk: the head concatenates the deepest stage first.
        out = F.flatten(F.concat(*feats[::-1], dim=1))
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
