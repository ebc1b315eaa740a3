"""Layers shared by the PyTorch models.

``BatchNorm2d``/``BatchNorm1d`` are torch's, without the ``num_batches_tracked`` counter
(unused with a fixed momentum, and absent in Gluon and Paddle), and with a choice of how
the running variance is updated: torch's unbiased batch variance (``biased_var=False``,
the default, for models born in PyTorch) or MXNet's and Paddle's biased one
(``biased_var=True``, for ports of Gluon and Paddle models).
"""
import torch
import torch.nn.functional as F
from torch import nn


class _BatchNorm:
    def _setup(self, biased_var):
        self.biased_var = biased_var
        self.register_buffer("num_batches_tracked", None)

    def forward(self, x):
        if not (self.training and self.biased_var):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        out = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        with torch.no_grad():
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)
            self.running_mean.mul_(1 - self.momentum).add_(mean, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var, alpha=self.momentum)
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args):
        # torch adds a num_batches_tracked entry to a state dict without version metadata
        # (any plain dict, e.g. a converted one), which strict loading then rejects
        super()._load_from_state_dict(state_dict, prefix, {**local_metadata, "version": 2}, *args)

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
