"""Layers shared by the PyTorch models.

``BatchNorm2d``/``BatchNorm1d`` are torch's, without the ``num_batches_tracked`` counter
(unused with a fixed momentum, and absent in Gluon and Paddle), and with a choice of how
the running variance is updated: torch's unbiased batch variance (``biased_var=False``,
the default, for models born in PyTorch) or MXNet's and Paddle's biased one
(``biased_var=True``, for ports of Gluon and Paddle models).

``fused(fn)`` runs a function of tensors as the fused kernels inductor generates for it,
where a compiler for the device is present (``compiler_present``).
"""
import functools
import importlib.util

import torch
import torch.nn.functional as F
from torch import nn

from common.toolchain import cxx_compiler


class _BatchNorm:
    def _setup(self, biased_var):
        self.biased_var = biased_var
        self.register_buffer("num_batches_tracked", None)

    def forward(self, x):
        if not (self.training and self.biased_var):
            return super().forward(x)
        # torch's kernel updates running_var with the unbiased variance v * n / (n - 1);
        # rewriting its result r' = (1 - m) r + m v n / (n - 1) as (1 - m) r + m v takes two
        # C-length operations instead of another pass over x (a separate x.var() cost 19% of
        # a train step of a 56-layer network).
        # (torch's update goes to a copy: autograd keeps the buffer it was given.)
        updated = self.running_var.clone()
        out = F.batch_norm(x, self.running_mean, updated, self.weight, self.bias, True,
                           self.momentum, self.eps)
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            self.running_var.mul_((1 - self.momentum) / n).add_(updated, alpha=1 - 1 / n)
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        # a checkpoint of torch's own BatchNorm carries the counter: accept and drop it; and
        # stop torch from inventing one for a state_dict without version metadata
        state_dict.pop(prefix + "num_batches_tracked", None)
        local_metadata = dict(local_metadata, version=self._version)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def extra_repr(self):
        return super().extra_repr() + f", biased_var={self.biased_var}"


class BatchNorm2d(_BatchNorm, nn.BatchNorm2d):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, biased_var=False):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self._setup(biased_var)


class BatchNorm1d(_BatchNorm, nn.BatchNorm1d):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, biased_var=False):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self._setup(biased_var)


def compiler_present(device_type):
    """Whether inductor can build kernels for ``device_type``: a C++ compiler (``$CXX``,
    ``g++`` or ``c++`` on the PATH) for the CPU, Triton for CUDA."""
    if device_type == "cpu":
        return cxx_compiler() is not None
    return device_type == "cuda" and importlib.util.find_spec("triton") is not None


class fused:
    """``fn``, a function of tensors whose first argument's device is the computation's, run
    as the kernels inductor generates (``torch.compile(fn, dynamic=True)``: a chain of
    elementwise operations and reductions becomes a few passes over memory, one compilation
    per dtype serves every shape, the first call compiles) where ``compiler_present`` says
    it can; elsewhere, and inside a graph that torch.compile is tracing (which fuses it with
    the rest), ``fn`` itself. ``eager`` and ``compiled`` are the two versions."""

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.eager = fn

    @functools.cached_property
    def compiled(self):
        return torch.compile(self.eager, dynamic=True)

    def __call__(self, *args):
        if torch.compiler.is_compiling() or not compiler_present(args[0].device.type):
            return self.eager(*args)
        return self.compiled(*args)
