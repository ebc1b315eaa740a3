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
