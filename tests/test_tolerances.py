"""The parity tolerance helper itself fails where it must."""
import numpy as np
import pytest

from parity_tests.tolerances import (assert_close, assert_float32_roundoff, assert_same_argmax,
                                      tolerance_units)


def test_float64_accepts_round_off_rejects_semantics():
    x = np.random.default_rng(0).normal(size=1000)
    assert_close(x * (1 + 1e-13), x, np.float64)
    with pytest.raises(AssertionError, match="float64"):
        assert_close(x * (1 + 1e-8), x, np.float64)


def test_float32_floor_scales_with_the_tensor():
    x = np.array([1000.0, 1e-3], dtype=np.float32)
    assert_close(x + np.array([0, 5e-4], np.float32), x, np.float32)   # 5e-4 < 1e-6 * 1000
    with pytest.raises(AssertionError):
        assert_close(x + np.array([0, 5e-3], np.float32), x, np.float32)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(x[:1], x, np.float32)
    with pytest.raises(AssertionError):
        assert_close(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), np.float64)


def test_argmax():
    assert_same_argmax(np.eye(3), np.eye(3) * 2)
    with pytest.raises(AssertionError, match="1 of 3 rows"):
        assert_same_argmax(np.eye(3)[[0, 2, 2]], np.eye(3))


def test_tolerance_units():
    x = np.array([1.0, -2.0, 0.0])
    # float32: 1e-5 * |x| + 1e-6 * 2 allowed per element
    assert tolerance_units(x + [0, 0, 4e-6], x, np.float32) == pytest.approx(2.0)
    assert tolerance_units(x, x, np.float64) == 0.0
    assert tolerance_units(np.array([np.nan, 0, 0]), x, np.float32) == np.inf
    assert tolerance_units(np.ones(2), np.zeros(2), np.float32) == np.inf


def test_float32_roundoff_is_relative_to_the_native_error():
    exact = np.linspace(-1, 1, 11)
    unit = 1e-5 * np.abs(exact) + 1e-6   # one float32 tolerance per element (max |exact| = 1)
    native = exact + 4 * unit            # the native framework itself: 4 tolerances off
    assert_float32_roundoff(exact + 0.5 * unit, native, exact)      # within the tolerance
    assert_float32_roundoff(exact - 11 * unit, native, exact)       # within 3 x 4
    with pytest.raises(AssertionError, match="13.00 float32 tolerances"):
        assert_float32_roundoff(exact + 13 * unit, native, exact)
    # a native within the tolerance allows 3 tolerances, not 3 times its own error
    assert_float32_roundoff(exact + 2.9 * unit, exact + 0.1 * unit, exact)
    with pytest.raises(AssertionError, match="allowed: 3.00"):
        assert_float32_roundoff(exact + 3.1 * unit, exact + 0.1 * unit, exact)
