"""The Residual Attention Network's architecture constants and the pieces of MXNet's
arithmetic its ports reproduce, stated once for the three frameworks (numpy only):

* :data:`ATTENTION_SPECS`, :data:`WIDTHS`, :data:`NUM_STAGES`: the depths and widths the
  native Gluon model (:mod:`gluon_impl.models.attention`) and its ports build;
* :func:`bilinear_matrix`: MXNet's ``BilinearResize2D`` (align_corners=True) along one axis as
  a matrix, with the float32 source positions and weights of its CPU kernel, which float64
  parity sees;
* :func:`msra_prelu_std`: the standard deviation of MXNet's ``MSRAPrelu()`` initialiser, the
  recipe's initialisation of conv and dense weights.
"""
import functools
import math

import numpy as np

#: depth -> ([p, t, r], [attention modules in stage 1, 2, 3]) (paper Sec. 4.1)
ATTENTION_SPECS = {
    56: ((1, 2, 1), (1, 1, 1)),
    92: ((1, 2, 1), (1, 2, 3)),
    128: ((1, 2, 1), (3, 3, 3)),
    164: ((1, 2, 1), (4, 4, 4)),
    236: ((1, 2, 1), (6, 6, 6)),
    452: ((2, 4, 3), (6, 6, 6)),
}
#: variant -> (stem width, stage widths, head width)
WIDTHS = {"imagenet": (64, (256, 512, 1024), 2048), "cifar": (32, (128, 256, 512), 1024)}
NUM_STAGES = 3


@functools.lru_cache(maxsize=None)
def bilinear_matrix(size_in, size_out):
    """[size_out, size_in] float64 align_corners=True linear-interpolation matrix, with MXNet's
    float32 source positions and weights (``BilinearResize2D``'s CPU kernel). Read-only: it is
    cached."""
    scale = np.float32(size_in - 1) / np.float32(size_out - 1) if size_out > 1 else np.float32(0)
    position = scale * np.arange(size_out, dtype=np.float32)
    low = position.astype(np.int64)
    weight_high = (position - low.astype(np.float32)).astype(np.float64)
    high = np.minimum(low + 1, size_in - 1)
    matrix = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, low), 1 - weight_high)
    np.add.at(matrix, (rows, high), weight_high)
    matrix.flags.writeable = False
    return matrix


def msra_prelu_std(fan_in, fan_out):
    """MXNet's ``MSRAPrelu()``: Xavier, gaussian, factor 'avg', magnitude 2 / (1 + 0.25^2),
    i.e. a normal of this standard deviation (fans counted with the kernel's area)."""
    return math.sqrt((2.0 / (1 + 0.25 ** 2)) / ((fan_in + fan_out) / 2))
