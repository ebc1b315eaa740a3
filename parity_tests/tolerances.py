"""The one place where parity tolerances are stated; no parity test loosens them.

Two frameworks agree on a tensor when, elementwise,
``|actual - expected| <= rtol * |expected| + atol_scale * max|expected|``:

* float64: rtol 1e-10 and an absolute floor of 1e-10 of the tensor's largest magnitude,
  so only round-off passes and any semantic difference fails;
* float32: rtol 1e-5 and a floor of 1e-6 of the tensor's largest magnitude (tiny parameters
  and a conv bias feeding a BN carry only noise; see ../shared/docs/framework-semantics.md).

Predictions on real images must have the same argmax.

A whole deep network cannot be held to the float32 tolerance: its float32 result is off the
float64 one by about the tolerance or more in every framework (measured, in units of it:
train mode, whose batch statistics make the network ill-conditioned, PyTorch 1.4-10 on the
Residual Attention Networks and 1-8 on UPANets16, MXNet 4-90; eval mode of AlexNet(-SimAM)
with random weights on an AMD EPYC host, Paddle 0.22-0.96, PyTorch's oneDNN
convolutions 0.48-1.84, each of its convolutions alone 0.35-0.57, and MXNet Gluon's
0.74-1.18), so two implementations
cannot agree to it either. :func:`assert_float32_roundoff` then holds the port to the float64
result: within ``ROUNDOFF_FACTOR`` times the native's own error on the same inputs, or times
the tolerance where the native is within it (measured: a port's error reached 1.9 times the
native's where that was over the tolerance, and 1.84 tolerances where the native was within
it). Single layers and blocks are held to the tolerance itself.
"""
import numpy as np

TOLERANCES = {
    np.dtype(np.float64): (1e-10, 1e-10),
    np.dtype(np.float32): (1e-5, 1e-6),
}
ROUNDOFF_FACTOR = 3
# --amp (bfloat16 autocast on the CPU) against float32: the relative difference of the first
# training batch's loss, the forward before any update (bfloat16 keeps 8 bits of mantissa).
# Measured at batch 4 on the digits: UPANets16 0.50%, a one-block SAN10 2.3% (its last stage's
# BatchNorm sees 4 values); over 3 SGD steps at lr 0.1 the epoch's mean loss drifts further
# (UPANets16 4.2%), which is not held to this.
AMP_LOSS_RTOL = 0.05


def _numpy(x):
    for attr in ("asnumpy", "numpy"):  # MXNet NDArray, Paddle / torch tensors
        if hasattr(x, attr) and not isinstance(x, np.ndarray):
            if attr == "numpy" and hasattr(x, "detach"):  # torch (an NDArray has detach too)
                x = x.detach().cpu()
            return np.asarray(getattr(x, attr)())
    return np.asarray(x)


def tolerance_units(actual, expected, dtype):
    """The largest elementwise ``|actual - expected|`` in units of the tolerance of ``dtype``
    (at most 1 passes; NaN or Inf in ``actual`` give Inf)."""
    actual, expected = _numpy(actual).astype(np.float64), _numpy(expected).astype(np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} != {expected.shape}")
    if not np.all(np.isfinite(actual)):
        return np.inf
    rtol, atol_scale = TOLERANCES[np.dtype(dtype)]
    diff = np.abs(actual - expected)
    scale = float(np.abs(expected).max(initial=0.0))
    if scale == 0.0:  # an all-zero expectation allows no difference at all
        return 0.0 if not diff.any() else np.inf
    return float((diff / (rtol * np.abs(expected) + atol_scale * scale)).max(initial=0.0))


def assert_close(actual, expected, dtype, what="tensor"):
    """Assert ``actual`` equals ``expected`` within the tolerance of ``dtype``."""
    try:
        units = tolerance_units(actual, expected, dtype)
    except AssertionError as e:
        raise AssertionError(f"{what}: {e}") from None
    if units > 1:
        actual, expected = _numpy(actual).astype(np.float64), _numpy(expected).astype(np.float64)
        diff = np.abs(actual - expected)
        i = np.unravel_index(int(np.argmax(np.where(np.isfinite(diff), diff, np.inf))), diff.shape)
        raise AssertionError(
            f"{what} ({np.dtype(dtype).name}): {units:.3g} tolerances off, max |diff| "
            f"{diff.max():.3e} (max |expected| {np.abs(expected).max():.3e}); worst |diff| at "
            f"{i}: {actual[i]!r} vs {expected[i]!r}")


def float32_roundoff(port32, native32, native64):
    """A whole network's float32 result in a port against the float64 one: (the port's error,
    the native framework's own float32 error on the same inputs and weights, the error
    allowed: ``ROUNDOFF_FACTOR`` times the native's, or times the float32 tolerance where the
    native is within it), in units of the float32 tolerance."""
    native = tolerance_units(native32, native64, np.float32)
    port = tolerance_units(port32, native64, np.float32)
    return port, native, ROUNDOFF_FACTOR * max(native, 1.0)


def assert_float32_roundoff(port32, native32, native64, what="tensor"):
    """Assert a whole network's float32 result in a port is as close to the float64 one as
    float32 allows (:func:`float32_roundoff`). Returns the two errors, in units of the
    float32 tolerance."""
    port, native, allowed = float32_roundoff(port32, native32, native64)
    if not port <= allowed:
        raise AssertionError(
            f"{what}: the port's float32 is {port:.2f} float32 tolerances off the float64 result, "
            f"the native's {native:.2f} (allowed: {allowed:.2f})")
    return port, native


def assert_same_argmax(actual_logits, expected_logits, what="predictions"):
    """Assert every row predicts the same class."""
    a, b = _numpy(actual_logits).argmax(1), _numpy(expected_logits).argmax(1)
    differ = np.flatnonzero(a != b)
    if differ.size:
        raise AssertionError(f"{what}: {differ.size} of {a.size} rows differ, first at {differ[:10]}")
