"""Layers shared by the MXNet Gluon models.

* :class:`BatchNorm`: Gluon's BatchNorm (names ``gamma``, ``beta``, ``running_mean``,
  ``running_var``; MXNet's momentum convention, 0.9 = keep 90%) with a choice of how the
  running variance is updated in training: MXNet's biased batch variance
  (``unbiased_var=False``, the default) or torch's unbiased one (``unbiased_var=True``, for
  ports of models born in PyTorch; then torch momentum = 1 - ``momentum``).
  The torch-style update runs in imperative mode, computed in the data's dtype with Python
  floats (exact in float64, unlike the kernel's float32 ``eps``/``momentum`` attributes);
  float16 data (a network cast to float16 keeps its BatchNorm parameters float32) is
  normalised in float32 and returned in float16.
  A hybridized block has no in-graph way to assign its running statistics, so there the layer
  uses MXNet's own kernel: identical outputs, but training a hybridized model updates the
  running variance MXNet's way. Train imperatively; hybridize for inference.
* :func:`layer_norm_chw`: layer norm over every axis but the batch one, without affine
  parameters (torch's ``F.layer_norm(x, x.shape[1:])``), which ``nn.LayerNorm`` (one axis)
  does not give.
"""
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn


class BatchNorm(nn.BatchNorm):
    def __init__(self, in_channels, momentum=0.9, epsilon=1e-5, unbiased_var=False):
        super().__init__(momentum=momentum, epsilon=epsilon, in_channels=in_channels)
        self.momentum, self.epsilon, self.unbiased_var = momentum, epsilon, unbiased_var

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if F is not mx.nd or not self.unbiased_var:
            return super().hybrid_forward(F, x, gamma, beta, running_mean, running_var)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        dtype = x.dtype  # float16 data (--amp) is normalised in its float32 parameters' dtype
        x = x.astype(gamma.dtype, copy=False)
        if not autograd.is_training():
            return ((x - running_mean.reshape(shape)) / (running_var.reshape(shape) + self.epsilon).sqrt()
                    * gamma.reshape(shape) + beta.reshape(shape)).astype(dtype, copy=False)
        axes = (0,) + tuple(range(2, x.ndim))
        mean = x.mean(axis=axes)
        centred = x - mean.reshape(shape)
        var = (centred * centred).mean(axis=axes)
        out = centred / (var.reshape(shape) + self.epsilon).sqrt() * gamma.reshape(shape) + beta.reshape(shape)
        n = x.size // x.shape[1]
        m = self.momentum
        with autograd.pause():
            running_mean[:] = running_mean * m + mean.detach() * (1 - m)
            running_var[:] = running_var * m + var.detach() * (n / (n - 1)) * (1 - m)
        return out.astype(dtype, copy=False)


def layer_norm_chw(F, x, eps=1e-5):
    """Normalise every sample over all its axes but the batch one (no affine parameters)."""
    flat = F.reshape(x, (0, -1))
    centred = F.broadcast_sub(flat, F.mean(flat, axis=1, keepdims=True))
    var = F.mean(F.square(centred), axis=1, keepdims=True)
    return F.reshape_like(F.broadcast_div(centred, F.sqrt(var + eps)), x)
