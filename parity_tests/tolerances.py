"""The one place where parity tolerances are stated; no parity test loosens them.

Two frameworks agree on a tensor when, elementwise,
``|actual - expected| <= rtol * |expected| + atol_scale * max|expected|``:

* float64: rtol 1e-10 and an absolute floor of 1e-10 of the tensor's largest magnitude,
  so only round-off passes and any semantic difference fails;
* float32: rtol 1e-5 and a floor of 1e-6 of the tensor's largest magnitude (tiny parameters
  and a conv bias feeding a BN carry only noise; see ../shared/docs/framework-semantics.md).

Predictions on real images must have the same argmax.
"""
import numpy as np

TOLERANCES = {
    np.dtype(np.float64): (1e-10, 1e-10),
    np.dtype(np.float32): (1e-5, 1e-6),
}


def _numpy(x):
    for attr in ("asnumpy", "numpy"):  # MXNet NDArray, Paddle / detached torch tensors
        if hasattr(x, attr) and not isinstance(x, np.ndarray):
            if hasattr(x, "detach"):
                x = x.detach().cpu()
            return np.asarray(getattr(x, attr)())
    return np.asarray(x)


def assert_close(actual, expected, dtype, what="tensor"):
    """Assert ``actual`` equals ``expected`` within the tolerance of ``dtype``."""
    actual, expected = _numpy(actual).astype(np.float64), _numpy(expected).astype(np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} != {expected.shape}")
    rtol, atol_scale = TOLERANCES[np.dtype(dtype)]
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    excess = np.abs(actual - expected) - (rtol * np.abs(expected) + atol_scale * scale)
    if not np.all(np.isfinite(actual)) or excess.max(initial=-1.0) > 0:
        i = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.size else ()
        raise AssertionError(
            f"{what} ({np.dtype(dtype).name}): max |diff| {np.abs(actual - expected).max():.3e} "
            f"(max |expected| {scale:.3e}); worst at {i}: {actual[i]!r} vs {expected[i]!r}")


def assert_same_argmax(actual_logits, expected_logits, what="predictions"):
    """Assert every row predicts the same class."""
    a, b = _numpy(actual_logits).argmax(1), _numpy(expected_logits).argmax(1)
    differ = np.flatnonzero(a != b)
    if differ.size:
        raise AssertionError(f"{what}: {differ.size} of {a.size} rows differ, first at {differ[:10]}")
