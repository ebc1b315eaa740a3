"""MXNet's SGD and NAG update rules for Paddle parameters, for ports of Gluon recipes: the
rules of :mod:`pytorch_impl.mxnet_optim` (read there), computed in the same order.

Paddle's ``Momentum`` is torch's rule, not MXNet's (../shared/docs/framework-semantics.md):
its buffer accumulates gradients (``v = mu * v + g; w -= lr * v``), so a learning rate that
changes at every step (gluoncv's warmup and cosine) rescales the accumulated velocity, and its
``use_nesterov`` is torch's nesterov, which differs from MXNet's in-place ``nag_mom_update``
whenever the weight decay is not zero (``parity_tests/test_attention_paddle.py`` shows both).

:class:`MXNetSGD` has the optimizer methods a Paddle train session uses (``set_lr``,
``step``, ``clear_grad``, ``state_dict``, ``set_state_dict``; ``_parameter_list`` for
``paddle.amp.GradScaler``), its state keyed as
Paddle keys an optimizer's accumulators (``<parameter name>_momentum_0``), so that
:mod:`paddle_impl.optim_state` saves it under structural names.
"""
import numpy as np
import paddle


def _f32(value):
    """MXNet's operators take their hyper-parameters as C ``float``."""
    return float(np.float32(value))


class MXNetSGD:
    """MXNet ``sgd`` (``nesterov=False``) or ``nag`` (``nesterov=True``) on ``parameters``
    (those with ``stop_gradient`` set, e.g. BN running statistics, are left alone), weight
    decay on every other parameter as MXNet's default ``wd_mult = 1``. ``rescale_grad``
    multiplies the gradient first, as the Gluon Trainer's ``step(batch_size)`` does with
    ``1 / batch_size``."""

    ACCUMULATOR = "momentum_0"

    def __init__(self, parameters, learning_rate, momentum=0.0, wd=0.0, nesterov=False,
                 rescale_grad=1.0):
        if learning_rate < 0 or momentum < 0 or wd < 0:
            raise ValueError(f"learning_rate, momentum and wd must be non-negative, got "
                             f"{learning_rate}, {momentum}, {wd}")
        self.parameters = [p for p in parameters if not p.stop_gradient]
        self._parameter_list = self.parameters  # where paddle.amp.GradScaler finds the gradients
        self.lr, self.momentum, self.wd = learning_rate, momentum, wd
        self.nesterov, self.rescale_grad = nesterov, rescale_grad
        self.buffers = {}  # parameter name -> momentum buffer

    def set_lr(self, lr):
        self.lr = lr

    @paddle.no_grad()
    def step(self):
        lr, mu, wd, rescale = (_f32(v) for v in (self.lr, self.momentum, self.wd, self.rescale_grad))
        for w in self.parameters:
            if w.grad is None:
                continue
            g = w.grad * rescale
            if mu == 0:
                w.set_value(w - lr * (g + wd * w))
                continue
            m = self.buffers.get(w.name)
            if m is None:
                m = paddle.zeros_like(w)
            if not self.nesterov:
                m = m * mu - lr * (g + wd * w)
                w.set_value(w + m)
            else:  # in place in MXNet: the buffer's decay term sees the updated weight
                decayed = mu * m
                step = lr * (g + wd * w)
                w.set_value(w + (mu * (decayed - step) - step))
                m = decayed - lr * (g + wd * w)
            self.buffers[w.name] = m

    def clear_grad(self):
        for w in self.parameters:
            w.clear_gradient(False)

    def state_dict(self):
        return {f"{name}_{self.ACCUMULATOR}": m for name, m in self.buffers.items()}

    def set_state_dict(self, state):
        """Load :meth:`state_dict`'s buffers (tensors or numpy arrays) onto the parameters'
        dtype; every key must name a parameter of this optimizer."""
        dtypes = {w.name: w.dtype for w in self.parameters}
        buffers = {}
        for key, value in state.items():
            name, _, accumulator = key.rpartition("_" + self.ACCUMULATOR)
            if accumulator or name not in dtypes:
                raise KeyError(f"optimizer state {key!r} belongs to no parameter of this optimizer")
            buffers[name] = paddle.to_tensor(np.asarray(value)).astype(dtypes[name])
        self.buffers = buffers
