"""Window geometry of SAN's aggregation and subtraction operators (Zhao et al., CVPR 2020,
Sec. 3), shared by the PyTorch and Paddle operators: output sizes, padding modes and the
strided slices that read every window offset without unfolding the input."""

ZERO_PAD, REFLECT_PAD = 0, 1


def output_size(size, kernel, stride, padding, dilation):
    """Number of window positions along one axis (as a convolution)."""
    return (size + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1


def check_padding(padding, pad_mode, shape):
    """Raise a clear ValueError for an unknown ``pad_mode`` or a reflection padding that an
    input of spatial ``shape`` (N, C, H, W) cannot provide."""
    if pad_mode not in (ZERO_PAD, REFLECT_PAD):
        raise ValueError(f"pad_mode must be 0 (zeros) or 1 (reflection), got {pad_mode!r}")
    if pad_mode == REFLECT_PAD and padding >= min(shape[2], shape[3]):
        raise ValueError(f"reflection padding {padding} needs an input larger than "
                         f"{padding}x{padding}, got {tuple(shape[2:])}")


def window_offsets(kernel, stride, dilation, out_h, out_w):
    """For each window offset j (row-major), the strided slices of the padded input that
    hold x[window_j(p)] for every output position p."""
    span_h, span_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
    for kh in range(kernel):
        for kw in range(kernel):
            top, left = kh * dilation, kw * dilation
            yield (slice(top, top + span_h, stride), slice(left, left + span_w, stride))


def _output_hw(shape, kernel, stride, padding, dilation):
    out_h = output_size(shape[2], kernel, stride, padding, dilation)
    out_w = output_size(shape[3], kernel, stride, padding, dilation)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"a {kernel}x{kernel} window (dilation {dilation}, padding {padding}) "
                         f"does not fit an input of {tuple(shape[2:])}")
    return out_h, out_w


def aggregation_geometry(x_shape, weight_shape, kernel, stride, padding, dilation):
    """(Ho, Wo) of ``aggregation(x, weight)``; a clear ValueError when the shapes do not fit
    (x [N, C, H, W], weight [N, C_w, k*k, Ho*Wo] with C a multiple of C_w)."""
    x_shape, weight_shape = tuple(x_shape), tuple(weight_shape)
    if len(x_shape) != 4 or len(weight_shape) != 4:
        raise ValueError("aggregation expects x [N, C, H, W] and weight [N, C_w, k*k, L]")
    out_h, out_w = _output_hw(x_shape, kernel, stride, padding, dilation)
    n, c = x_shape[:2]
    expected = (n, weight_shape[1], kernel * kernel, out_h * out_w)
    if weight_shape != expected or c % weight_shape[1]:
        raise ValueError(f"weight of shape {weight_shape} does not fit x {x_shape}: "
                         f"expected {expected} with C = {c} a multiple of C_w")
    return out_h, out_w


def subtraction_geometry(x1_shape, x2_shape, kernel, stride, padding, dilation):
    """(Ho, Wo) of ``subtraction2(x1, x2)``; a clear ValueError unless both are [N, C, H, W]
    of one shape and the window fits."""
    x1_shape, x2_shape = tuple(x1_shape), tuple(x2_shape)
    if len(x1_shape) != 4 or x1_shape != x2_shape:
        raise ValueError(f"subtraction2 expects two [N, C, H, W] tensors of one shape, got "
                         f"{x1_shape} and {x2_shape}")
    return _output_hw(x1_shape, kernel, stride, padding, dilation)
