"""MXNet's SGD and NAG update rules as torch optimizers, for ports of Gluon recipes.

They differ from ``torch.optim.SGD`` (../shared/docs/framework-semantics.md):

* the learning rate lives **inside** the momentum buffer, so a changing rate (warmup,
  cosine) does not rescale the accumulated velocity::

      sgd:  m = mu * m - lr * (rescale * g + wd * w);   w = w + m

* MXNet's ``nag_mom_update`` runs in place (``out`` is the weight), so the buffer's
  weight-decay term sees the weight it has just updated::

      m' = mu * m - lr * (rescale * g + wd * w)
      w  = w + mu * m' - lr * (rescale * g + wd * w)
      m  = mu * m - lr * (rescale * g + wd * w_new)

* the operators take their hyper-parameters as C ``float``: lr, momentum, wd and
  ``rescale_grad`` are rounded to float32 even when the weights are float64.

With ``momentum == 0`` both are MXNet's ``sgd_update``: ``w = w - lr * (rescale * g + wd * w)``.
Weight decay applies to every parameter given, as MXNet's default ``wd_mult = 1`` does.
"""
import numpy as np
import torch


def _f32(value):
    return float(np.float32(value))


class MXNetSGD(torch.optim.Optimizer):
    """MXNet ``sgd`` (``nesterov=False``) or ``nag`` (``nesterov=True``), bit-compatible in
    float64 up to round-off. ``rescale_grad`` multiplies the gradient first, as the Gluon
    Trainer's ``step(batch_size)`` does with ``1 / batch_size``."""

    def __init__(self, params, lr, momentum=0.0, wd=0.0, nesterov=False, rescale_grad=1.0):
        if lr < 0 or momentum < 0 or wd < 0:
            raise ValueError(f"lr, momentum and wd must be non-negative, got {lr}, {momentum}, {wd}")
        super().__init__(params, dict(lr=lr, momentum=momentum, wd=wd, nesterov=nesterov,
                                      rescale_grad=rescale_grad))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, wd = _f32(group["lr"]), _f32(group["momentum"]), _f32(group["wd"])
            rescale = _f32(group["rescale_grad"])
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad * rescale
                if mu == 0:
                    w.sub_(lr * (g + wd * w))
                    continue
                state = self.state[w]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(w)
                m = state["momentum_buffer"]
                if not group["nesterov"]:
                    m.mul_(mu).sub_(lr * (g + wd * w))
                    w.add_(m)
                else:
                    decayed = mu * m
                    step = lr * (g + wd * w)
                    w.add_(mu * (decayed - step) - step)
                    m.copy_(decayed - lr * (g + wd * w))
        return loss
