"""SAN's operators in MXNet Gluon, with the names, arguments and semantics of
``pytorch_impl/san_ops.py`` (read its docstring for the definitions):

* ``aggregation(x, w, kernel_size, stride, padding, dilation, pad_mode)``: weighted sum of
  each window, weight channel ``c mod C_w`` for input channel ``c``;
* ``subtraction(x, ...)`` / ``subtraction2(x1, x2, ...)``: centre minus each window offset;

zero (``pad_mode=0``) or reflection (``pad_mode=1``) padding. Each takes NDArrays
(imperative, checked against the window geometry of ``common/windows.py``) or Symbols (inside
a hybridized HybridBlock): the namespace is that of the inputs.

They are compositions of MXNet operators, so MXNet's autograd gives their gradients and they
hybridize into the model's graph; a ``CustomOp`` would call back into Python on every forward
and backward (outside the graph's memory planning and the engine's parallelism), for no
gain in exactness. None of them needs a shape, so one graph serves every input size:

* the window at offset (kh, kw) is ``slice(x_padded, begin=(kh*d, kw*d), step=stride)`` with
  an end counted from the padded input's end (``-(d*(k-1) - kh*d)``, None for the last
  offset), which holds exactly ``Ho`` rows whatever the input's height;
* the centre of the subtractions is ``slice(x1, step=stride)`` ending ``d*(k-1) - 2*padding``
  rows before the end (the SAN padding ``d*(k-1)/2`` ends it at the end).

**aggregation** walks the ``k*k`` window offsets over strided slices of the padded input,
multiplying each by its weights (broadcast over the ``C / C_w`` channel groups) and adding
it to the sum: it never builds the ``C x k*k x L`` unfolded input as one array. MXNet has no
strided views, so each slice is a copy of ``C x L`` values, freed once added in inference;
but under ``autograd.record()`` MXNet keeps every slice for the backward of its product,
``k*k`` copies in all, as much memory as the unfolded input (PyTorch and Paddle keep only the
padded input there). Measured (x [8, 64, 56, 56], k = 7, C_w = 8, float32: input 6 MiB,
weights 38 MiB, unfolded input 300 MiB; peak memory above the inputs, forward and backward):
hybridized inference 71 MiB, hybridized training 742 MiB, imperative inference 281 MiB (the
engine runs ahead of the frees), imperative training 922 MiB; PyTorch's Function 17 and 84
MiB. A ``CustomOp`` recomputing the slices in its backward would save that memory at the
cost of a Python call per operator in every pass. Grouping the channels needs ``C_w`` as a
number, which a Symbol does not carry: in a hybridized graph pass ``weight_channels=C_w``
(the SAN models do); imperatively it is read from the weight.

**subtraction2** unfolds its second input with ``im2col`` (the output is ``C x k*k x L``
anyway, and ``col2im`` folds its gradient back) and subtracts it from the centre.

Reflection padding is MXNet's ``pad(mode='reflect')``, which takes only 4-D input and pads
only H and W (what these operators need) and, as torch, refuses a padding not smaller than
the input.
"""
import mxnet as mx

# the padding modes and output_size are part of this module's interface (re-exported)
from common.windows import (REFLECT_PAD, ZERO_PAD, aggregation_geometry, check_padding,  # noqa: F401
                            output_size, subtraction_geometry)


def _namespace(*arrays):
    """``mx.sym`` when any input is a Symbol (a hybridized graph), else ``mx.nd``."""
    return mx.sym if any(isinstance(a, mx.sym.Symbol) for a in arrays) else mx.nd


def pad(x, padding, pad_mode):
    """``x`` padded by ``padding`` on every side of H and W with zeros (0) or by reflection (1)."""
    F = _namespace(x)
    if F is mx.nd:
        check_padding(padding, pad_mode, x.shape)
    else:
        check_padding(padding, pad_mode, (0, 0, padding + 1, padding + 1))  # the mode only
    if padding == 0:
        return x
    return F.pad(x, mode="reflect" if pad_mode == REFLECT_PAD else "constant",
                 pad_width=(0, 0, 0, 0) + (padding,) * 4)


def _from_end(n):
    """A slice end ``n`` elements before the end (None for 0)."""
    return -n if n > 0 else None


def _window(F, x_padded, kh, kw, kernel, stride, dilation):
    """The padded input at window offset (kh, kw) of every output position: [N, C, Ho, Wo]."""
    extent = dilation * (kernel - 1)
    top, left = kh * dilation, kw * dilation
    return F.slice(x_padded, begin=(None, None, top, left),
                   end=(None, None, _from_end(extent - top), _from_end(extent - left)),
                   step=(None, None, stride, stride))


def _centre(F, x, kernel, stride, padding, dilation):
    """The (unpadded) input at every window's centre: [N, C, Ho, Wo]."""
    end = _from_end(dilation * (kernel - 1) - 2 * padding)
    return F.slice(x, begin=(None, None, 0, 0), end=(None, None, end, end),
                   step=(None, None, stride, stride))


def aggregation(x, weight, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD,
                weight_channels=None):
    """Weighted sum of every window of ``x``: ``[N, C, Ho, Wo]``. ``weight_channels`` (C_w)
    is required with Symbol inputs and checked against the weight with NDArrays."""
    F = _namespace(x, weight)
    if F is mx.nd:
        aggregation_geometry(x.shape, weight.shape, kernel_size, stride, padding, dilation)
        if weight_channels not in (None, weight.shape[1]):
            raise ValueError(f"weight_channels={weight_channels} but the weight has {weight.shape[1]}")
        weight_channels = weight.shape[1]
    elif weight_channels is None:
        raise ValueError("aggregation in a hybridized graph needs weight_channels (C_w): a "
                         "Symbol has no shape to read it from")
    kk = kernel_size * kernel_size
    x_padded = pad(x, padding, pad_mode)
    # [N, 1, C_w, L] per window offset
    weights = F.split(weight, num_outputs=kk, axis=2, squeeze_axis=True) if kk > 1 else [F.reshape(weight, (0, 0, -1))]
    out = None
    for j in range(kk):
        window = _window(F, x_padded, j // kernel_size, j % kernel_size, kernel_size, stride, dilation)
        grouped = F.reshape(window, (0, -4, -1, weight_channels, -3))  # [N, C / C_w, C_w, L]
        product = F.broadcast_mul(grouped, F.expand_dims(weights[j], 1))
        # accumulated one offset at a time, so that each product can go once it is added
        out = product if out is None else out + product
    return F.reshape_like(out, window)


def subtraction2(x1, x2, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD):
    """``x1`` at each window's centre minus ``x2`` at each window offset: ``[N, C, k*k, L]``."""
    F = _namespace(x1, x2)
    if F is mx.nd:
        subtraction_geometry(x1.shape, x2.shape, kernel_size, stride, padding, dilation)
    kk = kernel_size * kernel_size
    windows = F.im2col(pad(x2, padding, pad_mode), kernel=(kernel_size, kernel_size),
                       stride=(stride, stride), dilate=(dilation, dilation))  # [N, C * k*k, L]
    windows = F.reshape(windows, (0, -4, -1, kk, -2))
    centre = F.expand_dims(F.reshape(_centre(F, x1, kernel_size, stride, padding, dilation), (0, 0, -1)), 2)
    return F.broadcast_sub(centre, windows)


def subtraction(x, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode=REFLECT_PAD):
    """``x`` at each window's centre minus ``x`` at each window offset: ``[N, C, k*k, L]``."""
    return subtraction2(x, x, kernel_size, stride, padding, dilation, pad_mode)
