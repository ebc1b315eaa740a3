"""torch's SGD-with-momentum and Adam rules as MXNet optimizers, for ports of recipes born in
PyTorch, and of Paddle's, whose Momentum and ``Adam(weight_decay=float)`` are torch's rules.

MXNet's ``sgd`` keeps the learning rate inside its momentum buffer (s = m*s - lr*(g + wd*w);
w += s), torch keeps it outside (buf = m*buf + g + wd*w; w -= lr*buf): the two agree only while
the rate is constant, and differ as soon as a schedule (cosine annealing) changes it.
``torchsgd`` is torch's ``optim.SGD(momentum, weight_decay)`` without dampening or Nesterov.

MXNet's ``adam`` adds ``epsilon`` to ``sqrt(v)`` before the bias correction, torch and Paddle
after it (MXNet = torch with ``eps_t = eps / sqrt(1 - beta2^t)``): the first steps differ
by far more than round-off. ``torchadam`` is torch's ``optim.Adam(weight_decay)`` (coupled L2:
``wd * w`` added to the gradient), which is Paddle's ``Adam(weight_decay=float)``. Its state
is ``(step, m, v)``, the step count per parameter as torch keeps it, so that a saved state
holds all an exact resume needs.

With ``multi_precision=True`` (``--amp``: a float16 network) each rule updates a float32
master copy of every float16 weight and writes the weight back as its float16 rounding; the
state of such a weight is ``(rule's state, master copy)``, the layout of MXNet's own ``sgd``
and ``nag`` (the base Optimizer's generic one is the reverse), so that a session finds the
master copy in one place whatever the optimizer.
"""
import math

import mxnet as mx
import numpy as np
from mxnet import nd


class MasterWeights:
    """multi_precision as MXNet's ``sgd`` keeps it: state ``(rule's state, float32 master)``."""

    def create_state_multi_precision(self, index, weight):
        if self.multi_precision and weight.dtype == np.float16:
            master = weight.astype(np.float32)
            return self.create_state(index, master), master
        return self.create_state(index, weight)

    def update_multi_precision(self, index, weight, grad, state):
        if self.multi_precision and weight.dtype == np.float16:
            own, master = state
            self.update(index, master, grad.astype(np.float32), own)
            weight[:] = master.astype(np.float16)
        else:
            self.update(index, weight, grad, state)


@mx.optimizer.register
class TorchSGD(MasterWeights, mx.optimizer.Optimizer):
    """``Trainer(params, 'torchsgd', {'learning_rate': lr, 'momentum': 0.9, 'wd': 5e-4})``."""

    def __init__(self, momentum=0.0, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def create_state(self, index, weight):
        return nd.zeros(weight.shape, weight.context, dtype=weight.dtype) if self.momentum else None

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        grad = grad * self.rescale_grad
        if self.clip_gradient is not None:
            grad = nd.clip(grad, -self.clip_gradient, self.clip_gradient)
        step = grad + wd * weight
        if state is not None:
            state[:] = state * self.momentum + step
            step = state
        weight[:] = weight - lr * step


@mx.optimizer.register
class TorchAdam(MasterWeights, mx.optimizer.Optimizer):
    """``Trainer(params, 'torchadam', {'learning_rate': 5e-4, 'wd': 1e-5})``: at step ``t``,
    ``g = grad + wd*w``; ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g^2``;
    ``w -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + epsilon)``."""

    def __init__(self, beta1=0.9, beta2=0.999, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        return (nd.zeros((1,), weight.context, dtype="int64"),
                nd.zeros(weight.shape, weight.context, dtype=weight.dtype),
                nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

    def update(self, index, weight, grad, state):
        self._update_count(index)
        step, mean, var = state
        lr, wd = self._get_lr(index), self._get_wd(index)
        grad = grad * self.rescale_grad
        if self.clip_gradient is not None:
            grad = nd.clip(grad, -self.clip_gradient, self.clip_gradient)
        grad = grad + wd * weight
        step[:] = step + 1
        t = int(step.asscalar())
        mean[:] = mean * self.beta1 + grad * (1 - self.beta1)
        var[:] = var * self.beta2 + grad * grad * (1 - self.beta2)
        denom = nd.sqrt(var) / math.sqrt(1 - self.beta2 ** t) + self.epsilon
        weight[:] = weight - (lr / (1 - self.beta1 ** t)) * mean / denom
