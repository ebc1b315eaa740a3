"""Layers shared by the MXNet Gluon models.

* :class:`BatchNorm`: Gluon's BatchNorm (names ``gamma``, ``beta``, ``running_mean``,
  ``running_var``; MXNet's momentum convention, 0.9 = keep 90%) with a choice of how the
  running variance is updated in training: MXNet's biased batch variance
  (``unbiased_var=False``, the default) or torch's unbiased one (``unbiased_var=True``, for
  ports of models born in PyTorch; then torch momentum = 1 - ``momentum``).
  Either way the output and its gradient are MXNet's fused kernel's. For torch's update, in
  imperative mode, the kernel runs with momentum 1 (it keeps the running statistics as they
  are) and returns the batch mean and inverse std; the layer then updates the statistics from
  these, C-length operations with Python floats (exact in float64, unlike the kernel's float32
  ``momentum`` attribute). A hybridized block has no in-graph way to assign its running
  statistics (MXNet writes them inside the kernel's backward pass, and only the kernel may
  write them), so there the layer is the kernel alone, which updates the running variance
  MXNet's way; :class:`TorchRunningVariance` turns that into torch's update after each
  hybridized training step (``gluon_impl.session.Placement`` does it). Float16 data (a network cast to float16 for ``--amp`` keeps its BatchNorm
  parameters float32) goes through the kernel as through MXNet's own BatchNorm.
* :func:`layer_norm_chw`: layer norm over every axis but the batch one, without affine
  parameters (torch's ``F.layer_norm(x, x.shape[1:])``), which ``nn.LayerNorm`` (one axis)
  does not give: a fused operator on the CPU (``gluon_impl/kernels``), else composed;
  :func:`spatial_means`: the mean of each channel map. Composed, both sum by products with
  ones, which MXNet computes many times faster than its reductions.
"""
import contextlib

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from . import kernels


class BatchNorm(nn.BatchNorm):
    def __init__(self, in_channels, momentum=0.9, epsilon=1e-5, unbiased_var=False):
        super().__init__(momentum=momentum, epsilon=epsilon, in_channels=in_channels)
        self.momentum, self.epsilon, self.unbiased_var = momentum, epsilon, unbiased_var

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if F is not mx.nd or not self.unbiased_var or not autograd.is_training():
            return super().hybrid_forward(F, x, gamma, beta, running_mean, running_var)
        out, mean, inv_std = F.BatchNorm(x, gamma, beta, running_mean, running_var, name="fwd",
                                         output_mean_var=True, **dict(self._kwargs, momentum=1.0))
        n = x.size // x.shape[1]
        m = self.momentum
        with autograd.pause():
            var = 1 / inv_std.square() - self.epsilon
            running_mean[:] = running_mean * m + mean * (1 - m)
            running_var[:] = running_var * m + var * (n / (n - 1) * (1 - m))
        return out


class TorchRunningVariance:
    """Torch's running-variance rule for the ``unbiased_var`` BatchNorms of ``model`` when it
    trains hybridized. There the kernel updates the running variance with the biased batch
    variance ``v``: ``r' = m r + (1 - m) v``. Around each step, :meth:`step` adds the rest of
    torch's update, ``(1 - m) v / (n - 1)``, which is ``(r' - m r) / (n - 1)`` from ``r``
    kept before the step: C-length operations per layer and context, after the kernel
    (which writes the statistics in its backward pass). ``n``, the values per channel in a
    context's part of the batch, is the part's rows times the per-sample count that
    :meth:`measure` records from one imperative forward pass (a graph has no shapes)."""

    def __init__(self, model):
        self.model, self.layers = model, []
        model.apply(lambda block: self.layers.append(block)
                    if isinstance(block, BatchNorm) and block.unbiased_var else None)
        self.per_sample = None

    def measure(self, sample):
        """Record each layer's values per channel and sample from an imperative forward
        pass of ``sample`` (a batch of one; call it before hybridizing)."""
        counts = {}

        def count(block, inputs, _):
            counts[block] = inputs[0].size // (inputs[0].shape[0] * inputs[0].shape[1])
        hooks = [layer.register_forward_hook(count) for layer in self.layers]
        try:
            with autograd.predict_mode():
                self.model(sample)
        finally:
            for hook in hooks:
                hook.detach()
        self.per_sample = [counts[layer] for layer in self.layers]

    @contextlib.contextmanager
    def step(self, rows):
        """Around one training step whose batch has ``rows[i]`` rows on the i-th context of
        the parameters."""
        before = [[d.copy() for d in layer.running_var.list_data()] for layer in self.layers]
        yield
        for layer, per_sample, old in zip(self.layers, self.per_sample, before):
            m = layer.momentum
            for new, previous, n in zip(layer.running_var.list_data(), old, rows):
                new[:] = new + (new - previous * m) / (n * per_sample - 1)


def ones_row(F, t, ndim):
    """A row of ones as long as the last axis of the ``ndim``-D array ``t``: ``[1, K]``."""
    for axis in range(ndim - 1):
        t = F.slice_axis(t, axis=axis, begin=0, end=1)
    return F.reshape(F.ones_like(t), (1, -1))


def last_axis_means(F, t, ones):
    """The means of ``t`` over its last axis (kept, length 1), as a product with ``ones``:
    MXNet 1.9.1's reductions over an axis, and so the gradients of its broadcasting
    operators, are slow on the CPU (a mean over [64, 16384]: 3.8 ms; as ``FullyConnected``
    with a ones weight: 0.17)."""
    return F.broadcast_div(F.FullyConnected(t, ones, no_bias=True, flatten=False, num_hidden=1),
                           F.sum(ones))


def spatial_means(F, x):
    """The mean of every channel map of ``[N, C, H, W]``: ``[N, C, 1, 1]``."""
    rows = F.reshape(x, (0, 0, -1))
    return F.expand_dims(last_axis_means(F, rows, ones_row(F, rows, 3)), axis=3)


def layer_norm_chw(F, x, eps=1e-5):
    """Normalise every sample over all its axes but the batch one (no affine parameters).

    On the CPU, where a C++ compiler is present, one fused operator
    (``gluon_impl/kernels/layer_norm.cc``: sums in double; on [100, 64, 16, 16] 1.1 ms
    against 11.9 for the composed operations below). Elsewhere: centred twice, the second
    time by the mean of the centred values (the first mean's float32 round-off left 7.8
    float32 tolerances on activations whose mean is large against their spread; MXNet's
    fused ``LayerNorm`` is 84 off there), then a two-pass variance.
    Sums are products with a row of ones (:func:`last_axis_means`) and each sample's mean
    and spread are spread over the sample by a product with it, not broadcast: the same
    values, forward and backward 1.5 times as fast.
    """
    if kernels.for_data("layer_norm", F, x):
        return F.layer_norm_chw(x, eps=eps)
    flat = F.reshape(x, (0, -1))
    ones = ones_row(F, flat, 2)
    centred = F.elemwise_sub(flat, F.dot(last_axis_means(F, flat, ones), ones))
    centred = F.elemwise_sub(centred, F.dot(last_axis_means(F, centred, ones), ones))
    std = F.sqrt(last_axis_means(F, F.square(centred), ones) + eps)
    return F.reshape_like(F.elemwise_div(centred, F.dot(std, ones)), x)
