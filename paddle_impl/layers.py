"""Layers shared by the Paddle models.

``BatchNorm2D``/``BatchNorm1D`` are Paddle's (names ``weight``, ``bias``, ``_mean``,
``_variance``; Paddle's momentum convention, 0.9 = keep 90%) with a choice of how the
running variance is updated in training: Paddle's biased batch variance
(``unbiased_var=False``, the default; MXNet's rule too) or torch's unbiased one
(``unbiased_var=True``, for ports of models born in PyTorch). A float64 training step is
computed from Paddle ops, whichever the rule (see :meth:`_BatchNorm._batch_norm_float64`).
Inference is one fused operator on the CPU where a C++ compiler is present
(:meth:`_BatchNorm._batch_norm_inference`), Paddle's kernel elsewhere.

``Conv2D`` is Paddle's (names ``weight``, ``bias``) with the bias added after the kernel
through an ``expand``ed bias instead of Paddle's broadcast over the channel axis; ``ReLU``
writes over its input.
"""
import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from . import kernels


class _BatchNorm:
    def _batch_norm_float64(self, x):
        """A float64 training step from Paddle ops: the kernel takes ``epsilon`` as a float32
        (measured 1e-8 off torch on a channel of std 1e-3; through the Residual Attention
        Network's 56 layers its float64 gradients were 0.99 float64 tolerances off MXNet's,
        these 0.002). The running statistics are updated with the biased or unbiased
        (``unbiased_var``) batch variance and the momentum as given (a port of MXNet passes
        MXNet's float32 one)."""
        n = math.prod(x.shape) // x.shape[1]
        m = self._momentum
        axes = [0] + list(range(2, x.ndim))
        shape = [1, -1] + [1] * (x.ndim - 2)
        mean = x.mean(axis=axes)
        centred = x - mean.reshape(shape)
        var = (centred * centred).mean(axis=axes)
        running_var = var.detach() * (n / (n - 1)) if self.unbiased_var else var.detach()
        with paddle.no_grad():
            self._mean.set_value(self._mean * m + mean.detach() * (1 - m))
            self._variance.set_value(self._variance * m + running_var * (1 - m))
        out = centred / paddle.sqrt(var.reshape(shape) + self._epsilon)
        return out * self.weight.reshape(shape) + self.bias.reshape(shape)

    def _batch_norm_unbiased(self, x):
        """A float32 training step that updates the running variance with torch's unbiased
        rule, by the kernel, because Paddle's float32 reductions sum naively: composed from
        ops, UPANets16's float32 gradients were up to 10^4 times the float32 tolerance off
        their float64 values (the kernel: 25 times, torch's own: 9). The kernel updates the
        running statistics in place with the biased batch variance v (the variance in a
        copy); a C-length correction turns that into torch's: ``+ (1 - m) v / (n - 1)``, with
        ``(1 - m) v`` = the new running variance less ``m`` times the old one. ``n`` comes
        from the shape, not from a tensor (``numel().item()`` waits for the device)."""
        n = math.prod(x.shape) // x.shape[1]
        var = self._variance.clone()  # autograd refuses an in-place change of the kernel's input
        out = F.batch_norm(x, self._mean, var, self.weight, self.bias, training=True,
                           momentum=self._momentum, epsilon=self._epsilon,
                           data_format=self._data_format)
        with paddle.no_grad():
            paddle.assign(var + (var - self._variance * self._momentum) / (n - 1), self._variance)
        return out

    def _batch_norm_inference(self, x, fused):
        """Inference with the running statistics as one pass over ``x``
        (``paddle_impl/kernels/norm.cc``): ``x * scale + shift`` per channel, ``scale`` and
        ``shift`` C-length Paddle operations (so gradients reach the weight and bias). The
        same normalisation, with ``epsilon`` exact in float64 (Paddle's kernel rounds it to
        float32, as in training)."""
        scale = self.weight / paddle.sqrt(self._variance + self._epsilon)
        return fused.channel_affine(x, scale, self.bias - self._mean * scale)

    def forward(self, x):
        if self.training and x.dtype == paddle.float64:
            return self._batch_norm_float64(x)
        if self.training and self.unbiased_var:
            return self._batch_norm_unbiased(x)
        if not self.training and self._data_format.startswith("NC"):
            fused = kernels.for_tensor("norm", x)
            if fused is not None:
                return self._batch_norm_inference(x, fused)
        return super().forward(x)


class BatchNorm2D(_BatchNorm, nn.BatchNorm2D):
    def __init__(self, num_features, momentum=0.9, epsilon=1e-5, unbiased_var=False):
        super().__init__(num_features, momentum=momentum, epsilon=epsilon)
        self.unbiased_var = unbiased_var


class BatchNorm1D(_BatchNorm, nn.BatchNorm1D):
    def __init__(self, num_features, momentum=0.9, epsilon=1e-5, unbiased_var=False):
        super().__init__(num_features, momentum=momentum, epsilon=epsilon)
        self.unbiased_var = unbiased_var


class Conv2D(nn.Conv2D):
    """Paddle's ``Conv2D``, computing the same sums faster: Paddle 3.3.1 adds a convolution's
    bias by broadcasting ``[1, C, 1, 1]`` over a middle axis, a slow path of its CPU kernels
    (a 1x1 convolution from 18 to 16 channels on [2, 18, 49, 3136], SAN's attention weights:
    37.9 ms, of which the convolution itself is 6.3), while adding the bias ``expand``ed to
    the output's shape takes 4.3 ms. The same additions, so the same values."""

    def forward(self, x):
        if self.bias is None or self._padding_mode != "zeros":
            return super().forward(x)
        out = F.conv2d(x, self.weight, None, self._stride, self._padding, self._dilation,
                       self._groups, self._data_format)
        shape = [1, -1, 1, 1] if self._data_format == "NCHW" else [1, 1, 1, -1]
        return out + self.bias.reshape(shape).expand(out.shape)


class ReLU(nn.Layer):
    """ReLU written over its input, torch's ``nn.ReLU(inplace=True)``: for an input that
    nothing else reads, such as a batch norm's output (Paddle's ``nn.ReLU`` writes a new
    tensor: on SAN's [2, 18, 49, 3136] relations 1.6 against 0.8 ms)."""

    def forward(self, x):
        return F.relu_(x)
