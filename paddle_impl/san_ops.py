"""SAN's operators in PaddlePaddle, with the names, arguments and semantics of
``pytorch_impl/san_ops.py`` (read its docstring for the definitions):

* ``aggregation(x, w, kernel_size, stride, padding, dilation, pad_mode)``: weighted sum of
  each window, weight channel ``c mod C_w`` for input channel ``c``;
* ``subtraction(x, ...)`` / ``subtraction2(x1, x2, ...)``: centre minus each window offset;

zero (``pad_mode=0``) or reflection (``pad_mode=1``) padding. As in PyTorch, each operator is
a ``PyLayer``: aggregation walks the ``k*k`` window offsets over strided views of the padded
input, so its ``C x k*k x L`` unfolded input is never built, and the subtractions unfold into
their output. On the CPU, where a C++ compiler is present, aggregation and the subtractions
are instead fused operators (``paddle_impl/kernels/san.cc``) that walk the offsets over each
channel's plane while it is in cache; the parity tests run both.
"""
import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer

# the padding modes and output_size are part of this module's interface (re-exported)
from common.windows import (REFLECT_PAD, ZERO_PAD, aggregation_geometry, check_padding,  # noqa: F401
                            output_size, subtraction_geometry, window_offsets)

from . import kernels


def pad(x, padding, pad_mode):
    """``x`` padded by ``padding`` on every side with zeros (0) or by reflection (1)."""
    check_padding(padding, pad_mode, x.shape)
    if padding == 0:
        return x
    return F.pad(x, [padding] * 4, mode="reflect" if pad_mode == REFLECT_PAD else "constant")


def _centre_slices(stride, out_h, out_w):
    return slice(0, (out_h - 1) * stride + 1, stride), slice(0, (out_w - 1) * stride + 1, stride)


def _wide(t, wp):
    """``[..., out_h, out_w]`` as ``[..., out_h * wp]``: each row padded with zeros to ``wp``."""
    pad = paddle.zeros([*t.shape[:-1], wp - t.shape[-1]], t.dtype)
    return paddle.concat([t, pad], axis=-1).reshape([*t.shape[:-2], t.shape[-2] * wp])


def _narrow(t, out_h, wp, out_w):
    """The inverse of :func:`_wide`: ``[..., out_h * wp]`` as ``[..., out_h, out_w]``."""
    return t.reshape([*t.shape[:-1], out_h, wp])[..., :out_w].contiguous()


def _pad_last(t, width):
    """``t`` with ``width`` zeros before and after its last axis."""
    zeros = paddle.zeros([*t.shape[:-1], width], t.dtype)
    return paddle.concat([zeros, t, zeros], axis=-1)


class _Rows:
    """The stride-1 aggregation on whole padded rows: for each window offset, the input is
    one contiguous range of the flattened padded input (``out_h`` rows of the padded width
    ``Wp``, so each output row carries ``Wp - out_w`` extra columns, whose gradient is zero
    and whose output is dropped) and the weights of that offset are broadcast over the
    channel groups by ``expand``. The same products summed in the same order as the 2-D
    windows, several times faster: Paddle copies a 2-D strided window slowly and broadcasts
    a middle axis slowly (on [2, 64, 56, 56]: 3.8 and 3.6 ms against 0.4 and 0.3 ms for a
    range slice and an expanded multiply)."""

    def __init__(self, x_padded, weight, kernel, dilation, out_h, out_w):
        self.n, self.c, self.hp, self.wp = x_padded.shape
        self.c_w, self.taps, self.out_h, self.out_w = weight.shape[1], kernel * kernel, out_h, out_w
        self.wide = out_h * self.wp
        self.reach = (kernel - 1) * dilation  # the last offset's range passes the end by this
        self.starts = [rows.start * self.wp + cols.start
                       for rows, cols in window_offsets(kernel, 1, dilation, out_h, out_w)]

    def groups(self, t):
        return t.reshape([self.n, self.c // self.c_w, self.c_w, self.wide])

    def flat(self, x_padded):
        """The padded input flattened, with room for the last offset's range."""
        return paddle.concat([x_padded.reshape([self.n, self.c, self.hp * self.wp]),
                              paddle.zeros([self.n, self.c, self.reach], x_padded.dtype)], axis=2)

    def weights(self, weight):
        """``[taps, N, C_w, out_h * Wp]``: each offset's weights on whole rows."""
        w = weight.reshape([self.n, self.c_w, self.taps, self.out_h, self.out_w])
        return _wide(w.transpose([2, 0, 1, 3, 4]), self.wp).unsqueeze(2)

    def forward(self, x_padded, weight):
        flat, w = self.flat(x_padded), self.weights(weight)
        out = paddle.zeros([self.n, self.c // self.c_w, self.c_w, self.wide], x_padded.dtype)
        for j, start in enumerate(self.starts):
            window = self.groups(flat[:, :, start:start + self.wide])
            out.add_(window * w[j].expand(out.shape))
        return _narrow(out.reshape([self.n, self.c, self.wide]), self.out_h, self.wp, self.out_w)

    def backward(self, x_padded, weight, grad_out, needs_x, needs_w):
        g = self.groups(_wide(grad_out, self.wp))
        grad_x = grad_w = None
        if needs_x:
            # gathered, not scattered: input position q takes g[q - start] * w[q - start] of
            # each offset (the same products added in the same order), read as one range of
            # g and w padded by the last start on both sides (Paddle adds into a slice slowly)
            last, size = self.starts[-1], self.wide + self.starts[-1]
            g_pad = _pad_last(g, last)
            w_pad = _pad_last(self.weights(weight), last)
            grad = paddle.zeros([*g.shape[:3], size], grad_out.dtype)
            for j, start in enumerate(self.starts):
                at = last - start
                grad.add_(g_pad[..., at:at + size] * w_pad[j, ..., at:at + size].expand(grad.shape))
            grad_x = grad.reshape([self.n, self.c, size])[:, :, :self.hp * self.wp].reshape(
                x_padded.shape)
        if needs_w:
            flat = self.flat(x_padded)
            grad_w = paddle.stack([(g * self.groups(flat[:, :, s:s + self.wide])).sum(1)
                                   for s in self.starts], 2)
            grad_w = _narrow(grad_w, self.out_h, self.wp, self.out_w).reshape(weight.shape)
        return grad_x, grad_w


class _Aggregation(PyLayer):
    @staticmethod
    def forward(ctx, x_padded, weight, kernel, stride, dilation, out_h, out_w):
        n, c = x_padded.shape[:2]
        c_w = weight.shape[1]
        ctx.save_for_backward(x_padded, weight)
        ctx.geometry = kernel, stride, dilation, out_h, out_w
        ctx.needs_grad = not x_padded.stop_gradient, not weight.stop_gradient
        if stride == 1:
            return _Rows(x_padded, weight, kernel, dilation, out_h, out_w).forward(x_padded, weight)
        w = weight.reshape([n, 1, c_w, kernel * kernel, out_h, out_w])
        out = paddle.zeros([n, c // c_w, c_w, out_h, out_w], dtype=x_padded.dtype)
        for j, (rows, cols) in enumerate(window_offsets(kernel, stride, dilation, out_h, out_w)):
            window = x_padded[:, :, rows, cols].reshape([n, c // c_w, c_w, out_h, out_w])
            out.add_(window * w[:, :, :, j])
        return out.reshape([n, c, out_h, out_w])

    @staticmethod
    def backward(ctx, grad_out):
        x_padded, weight = ctx.saved_tensor()
        kernel, stride, dilation, out_h, out_w = ctx.geometry
        n, c = x_padded.shape[:2]
        c_w = weight.shape[1]
        needs_x, needs_w = ctx.needs_grad
        if stride == 1:
            return _Rows(x_padded, weight, kernel, dilation, out_h, out_w).backward(
                x_padded, weight, grad_out, needs_x, needs_w)
        g = grad_out.reshape([n, c // c_w, c_w, out_h, out_w])
        w = weight.reshape([n, 1, c_w, kernel * kernel, out_h, out_w])
        grad_x = paddle.zeros_like(x_padded) if needs_x else None
        grad_w = []
        for j, (rows, cols) in enumerate(window_offsets(kernel, stride, dilation, out_h, out_w)):
            if needs_x:
                grad_x[:, :, rows, cols] += (g * w[:, :, :, j]).reshape([n, c, out_h, out_w])
            if needs_w:
                window = x_padded[:, :, rows, cols].reshape([n, c // c_w, c_w, out_h, out_w])
                grad_w.append((g * window).sum(1))
        grad_w = paddle.stack(grad_w, 2).reshape(weight.shape) if needs_w else None
        return grad_x, grad_w


class _Subtraction2(PyLayer):
    @staticmethod
    def forward(ctx, x1, x2_padded, kernel, stride, dilation, out_h, out_w):
        n, c = x1.shape[:2]
        ctx.geometry = kernel, stride, dilation, out_h, out_w, x1.shape, x2_padded.shape
        ctx.needs_grad = not x1.stop_gradient, not x2_padded.stop_gradient
        rows, cols = _centre_slices(stride, out_h, out_w)
        windows = F.unfold(x2_padded, kernel, strides=stride, dilations=dilation)
        shape = [n, c, kernel * kernel, out_h * out_w]
        centre = x1[:, :, rows, cols].reshape([n, c, 1, out_h * out_w]).expand(shape)
        return centre - windows.reshape(shape)

    @staticmethod
    def backward(ctx, grad_out):
        kernel, stride, dilation, out_h, out_w, x1_shape, x2_shape = ctx.geometry
        n, c = grad_out.shape[:2]
        grad_x1 = grad_x2 = None
        if ctx.needs_grad[0]:
            grad_x1 = grad_out.sum(2).reshape([n, c, out_h, out_w])
            if list(x1_shape[2:]) != [out_h, out_w]:  # the centres are a strided part of x1
                centres = grad_x1
                grad_x1 = paddle.zeros(x1_shape, dtype=grad_out.dtype)
                rows, cols = _centre_slices(stride, out_h, out_w)
                grad_x1[:, :, rows, cols] = centres
        if ctx.needs_grad[1]:
            grad_x2 = -F.fold(grad_out.reshape([n, c * kernel * kernel, out_h * out_w]),
                              list(x2_shape[2:]), kernel, strides=stride, dilations=dilation)
        return grad_x1, grad_x2


def aggregation(x, weight, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD):
    """Weighted sum of every window of ``x``: ``[N, C, Ho, Wo]``. On the CPU, where a C++
    compiler is present, one fused operator (``paddle_impl/kernels/san.cc``, forward and
    gradient); elsewhere the composed ``_Aggregation``."""
    out_h, out_w = aggregation_geometry(x.shape, weight.shape, kernel_size, stride, padding, dilation)
    fused = kernels.for_tensor("san", x)
    operator = fused.aggregation if fused is not None else _Aggregation.apply
    return operator(pad(x, padding, pad_mode), weight, kernel_size, stride, dilation, out_h, out_w)


def subtraction2(x1, x2, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD):
    """``x1`` at each window's centre minus ``x2`` at each window offset: ``[N, C, k*k, L]``.
    Fused on the CPU where a C++ compiler is present, as :func:`aggregation`."""
    out_h, out_w = subtraction_geometry(x1.shape, x2.shape, kernel_size, stride, padding, dilation)
    fused = kernels.for_tensor("san", x1)
    operator = fused.subtraction2 if fused is not None else _Subtraction2.apply
    return operator(x1, pad(x2, padding, pad_mode), kernel_size, stride, dilation, out_h, out_w)


def subtraction(x, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD):
    """``x`` at each window's centre minus ``x`` at each window offset: ``[N, C, k*k, L]``."""
    return subtraction2(x, x, kernel_size, stride, padding, dilation, pad_mode)
