"""The parity tolerance helper itself fails where it must."""
import numpy as np
import pytest

from parity_tests.tolerances import assert_close, assert_same_argmax


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
