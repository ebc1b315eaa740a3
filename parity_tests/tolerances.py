"""The one place where parity tolerances are stated; no parity test loosens them.

Two frameworks agree on a tensor when, elementwise,
``|actual - expected| <= rtol * |expected| + atol_scale * max|expected|``:

* float64: rtol 1e-10 and an absolute floor of 1e-10 of the tensor's largest magnitude,
  so only round-off passes and any semantic difference fails;
* float32: rtol 1e-5 and a floor of 1e-6 of the tensor's largest magnitude (tiny parameters
  and a conv bias feeding a BN carry only noise; see ../shared/docs/framework-semantics.md).

Predictions on real images must have the same argmax.

One case cannot meet the float32 tolerance in any framework: a whole deep network in train
mode, whose batch statistics make it ill-conditioned. There float32 itself is off the float64
result by more than the tolerance (measured, in units of it: PyTorch 1.4-10 on the Residual
Attention Networks and 1-8 on UPANets16; MXNet 4-90), so two implementations cannot agree to
it either. :func:`assert_float32_roundoff` then holds the port to the float64 result: within
the tolerance where the native framework's own float32 result is, else within
``ROUNDOFF_FACTOR`` times the native's error on the same inputs (measured: a port's error
reached 1.9 times the native's).
"""
import numpy as np

TOLERANCES = {
    np.dtype(np.float64): (1e-10, 1e-10),
    np.dtype(np.float32): (1e-5, 1e-6),
}
ROUNDOFF_FACTOR = 3


def _numpy(x):
    for attr in ("asnumpy", "numpy"):  # MXNet NDArray, Paddle / detached torch tensors
        if hasattr(x, attr) and not isinstance(x, np.ndarray):
            if hasattr(x, "detach"):
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


def assert_float32_roundoff(port32, native32, native64, what="tensor"):
    """Assert a port's float32 result is as close to the float64 one as float32 allows: within
    the float32 tolerance where the native framework's own float32 result (``native32``
    against ``native64``, same inputs and weights) is, else within ``ROUNDOFF_FACTOR`` times
    the native's error. Returns the two errors, in units of the float32 tolerance."""
    native = tolerance_units(native32, native64, np.float32)
    port = tolerance_units(port32, native64, np.float32)
    allowed = 1.0 if native <= 1 else ROUNDOFF_FACTOR * native
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
