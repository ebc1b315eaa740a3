"""The three operators of SAN's self-attention (Zhao, Jia, Koltun, CVPR 2020, Sec. 3),
in plain PyTorch with their own autograd, on any device and without CuPy.

For an input of ``H x W``, a ``kernel x kernel`` window with ``stride``, ``padding`` and
``dilation`` visits ``Ho x Wo`` output positions (``L = Ho * Wo``), as a convolution would.
``pad_mode`` 0 pads with zeros, 1 reflects (as ``nn.ReflectionPad2d``, so ``padding`` must be
smaller than the input).

* :func:`aggregation` ``(x [N, C, H, W], w [N, C_w, k*k, L]) -> [N, C, Ho, Wo]``:
  ``y[n, c, p] = sum_j w[n, c mod C_w, j, p] * x[n, c, window_j(p)]``, the weighted sum of each
  window (Eq. 1 of the paper). ``C`` is a multiple of ``C_w`` and the weight channels are
  shared **interleaved**: input channel ``c`` uses weight channel ``c mod C_w``.
* :func:`subtraction` ``(x [N, C, H, W]) -> [N, C, k*k, L]``: ``x[centre(p)] - x[window_j(p)]``.
* :func:`subtraction2` ``(x1, x2) -> [N, C, k*k, L]``: ``x1[centre(p)] - x2[window_j(p)]``,
  the relation ``delta(x_i, x_j) = x_i - x_j`` of pairwise attention (Eq. 3).

The centre of output position ``(h, w)`` is the input at ``(h * stride, w * stride)`` (a 1x1
window with the same stride), which is the middle of the window when
``padding = dilation * (kernel - 1) // 2``, as in every SAN layer.

Memory: :func:`aggregation` never builds the ``C x k*k x L`` unfolded input: it pads its input
once and walks the ``k*k`` window offsets, reading a strided view of the padded input per
offset, and keeps only its padded input and weights for the backward pass. The subtractions
unfold straight into their output (``C x k*k x L``, which is what they compute), negated and
shifted in place, and keep nothing but shapes.

Export: the ONNX exporter cannot trace the two autograd Functions (torch 2.13's TorchScript
exporter stops on them with ``RuntimeError: unordered_map::at``). Inside :func:`export_mode`
the three operators compute the same values from one ``F.unfold`` of the padded input each,
all of it plain traceable operations (ONNX ``Pad`` in mode ``reflect`` or ``constant``, the
exporter's ``im2col``, products and sums): aggregation as the unfolded windows times the
broadcast weights, summed over the window; the subtractions as the centre minus the
unfolded windows. This form is chosen over ONNX symbolics for the Functions because it is
ordinary PyTorch, which the tests compare with the Functions in float64 and which
onnxruntime runs with its standard kernels. It builds the whole ``C x k*k x L`` unfolded
input (``k*k`` times the memory of the input, which the Functions avoid), so it serves only
the export, never training; its batch dimension stays symbolic (``-1`` in every reshape).
"""
import contextlib

import torch
import torch.nn.functional as F
from torch.autograd import Function

# the padding modes and output_size are part of this module's interface (re-exported)
from common.windows import (REFLECT_PAD, ZERO_PAD, aggregation_geometry, check_padding,  # noqa: F401
                            output_size, subtraction_geometry, window_offsets)


_export_form = False


@contextlib.contextmanager
def export_mode():
    """Within this block (of this process, all threads), :func:`aggregation`,
    :func:`subtraction` and :func:`subtraction2` use their traceable ``F.unfold`` form (see
    the module docstring) instead of the autograd Functions."""
    global _export_form
    previous, _export_form = _export_form, True
    try:
        yield
    finally:
        _export_form = previous


def pad(x, padding, pad_mode):
    """``x`` padded by ``padding`` on every side with zeros (0) or by reflection (1)."""
    check_padding(padding, pad_mode, x.shape)
    if padding == 0:
        return x
    return F.pad(x, (padding,) * 4, mode="reflect" if pad_mode == REFLECT_PAD else "constant")


def _centre(x, stride, out_h, out_w):
    return x[:, :, :(out_h - 1) * stride + 1:stride, :(out_w - 1) * stride + 1:stride]


class _Aggregation(Function):
    """Aggregation over an already padded input (padding's own backward folds the border)."""

    @staticmethod
    def forward(ctx, x_padded, weight, kernel, stride, dilation, out_h, out_w):
        n, c, _, _ = x_padded.shape
        c_w = weight.shape[1]
        ctx.save_for_backward(x_padded, weight)
        ctx.geometry = kernel, stride, dilation, out_h, out_w
        w = weight.view(n, 1, c_w, kernel * kernel, out_h, out_w)
        out = x_padded.new_zeros(n, c // c_w, c_w, out_h, out_w)
        for j, (rows, cols) in enumerate(window_offsets(kernel, stride, dilation, out_h, out_w)):
            window = x_padded[:, :, rows, cols].view(n, c // c_w, c_w, out_h, out_w)
            out.addcmul_(window, w[:, :, :, j])
        return out.view(n, c, out_h, out_w)

    @staticmethod
    def backward(ctx, grad_out):
        x_padded, weight = ctx.saved_tensors
        kernel, stride, dilation, out_h, out_w = ctx.geometry
        n, c, _, _ = x_padded.shape
        c_w = weight.shape[1]
        g = grad_out.reshape(n, c // c_w, c_w, out_h, out_w)
        w = weight.view(n, 1, c_w, kernel * kernel, out_h, out_w)
        grad_x = torch.zeros_like(x_padded) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty_like(weight) if ctx.needs_input_grad[1] else None
        grad_w_view = grad_w.view(n, c_w, kernel * kernel, out_h, out_w) if grad_w is not None else None
        for j, (rows, cols) in enumerate(window_offsets(kernel, stride, dilation, out_h, out_w)):
            if grad_x is not None:
                grad_x[:, :, rows, cols].view(n, c // c_w, c_w, out_h, out_w).addcmul_(g, w[:, :, :, j])
            if grad_w is not None:
                window = x_padded[:, :, rows, cols].view(n, c // c_w, c_w, out_h, out_w)
                grad_w_view[:, :, j] = (g * window).sum(1)
        return grad_x, grad_w, None, None, None, None, None


class _Subtraction2(Function):
    """x1 at the window centre minus x2 at each window offset (x2 already padded): the
    unfolded windows of x2 are the output's own buffer, negated and shifted in place."""

    @staticmethod
    def forward(ctx, x1, x2_padded, kernel, stride, dilation, out_h, out_w):
        n, c = x1.shape[:2]
        ctx.geometry = kernel, stride, dilation, out_h, out_w, x1.shape, x2_padded.shape
        out = F.unfold(x2_padded, kernel, dilation=dilation, stride=stride).view(n, c, kernel * kernel, -1)
        return out.neg_().add_(_centre(x1, stride, out_h, out_w).reshape(n, c, 1, -1))

    @staticmethod
    def backward(ctx, grad_out):
        kernel, stride, dilation, out_h, out_w, x1_shape, x2_shape = ctx.geometry
        n, c = grad_out.shape[:2]
        grad_x1 = grad_x2 = None
        if ctx.needs_input_grad[0]:
            grad_x1 = grad_out.new_zeros(x1_shape)
            _centre(grad_x1, stride, out_h, out_w).copy_(grad_out.sum(2).view(n, c, out_h, out_w))
        if ctx.needs_input_grad[1]:
            grad_x2 = F.fold(grad_out.reshape(n, -1, out_h * out_w), x2_shape[2:], kernel,
                             dilation=dilation, stride=stride).neg_()
        return grad_x1, grad_x2, None, None, None, None, None


def aggregation(x, weight, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD):
    """Weighted sum of every window of ``x`` (see the module docstring): ``[N, C, Ho, Wo]``."""
    out_h, out_w = aggregation_geometry(x.shape, weight.shape, kernel_size, stride, padding, dilation)
    if _export_form:
        c, c_w, kk = x.shape[1], weight.shape[1], kernel_size * kernel_size
        windows = F.unfold(pad(x, padding, pad_mode), kernel_size, dilation=dilation, stride=stride)
        weighted = windows.view(-1, c // c_w, c_w, kk, out_h * out_w) * weight.unsqueeze(1)
        return weighted.sum(3).view(-1, c, out_h, out_w)
    return _Aggregation.apply(pad(x, padding, pad_mode), weight.contiguous(),
                              kernel_size, stride, dilation, out_h, out_w)


def subtraction2(x1, x2, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD):
    """``x1`` at each window's centre minus ``x2`` at each window offset: ``[N, C, k*k, L]``."""
    out_h, out_w = subtraction_geometry(x1.shape, x2.shape, kernel_size, stride, padding, dilation)
    if _export_form:
        c = x1.shape[1]
        windows = F.unfold(pad(x2, padding, pad_mode), kernel_size, dilation=dilation, stride=stride)
        centre = _centre(x1, stride, out_h, out_w).reshape(-1, c, 1, out_h * out_w)
        return centre - windows.view(-1, c, kernel_size * kernel_size, out_h * out_w)
    return _Subtraction2.apply(x1, pad(x2, padding, pad_mode), kernel_size, stride, dilation,
                               out_h, out_w)


def subtraction(x, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD):
    """``x`` at each window's centre minus ``x`` at each window offset: ``[N, C, k*k, L]``."""
    return subtraction2(x, x, kernel_size, stride, padding, dilation, pad_mode)
