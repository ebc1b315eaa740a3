"""torch's SGD-with-momentum rule as an MXNet optimizer, for ports of PyTorch recipes.

MXNet's ``sgd`` keeps the learning rate inside its momentum buffer (s = m*s - lr*(g + wd*w);
w += s), torch keeps it outside (buf = m*buf + g + wd*w; w -= lr*buf): the two agree only while
the rate is constant, and differ as soon as a schedule (cosine annealing) changes it.
``torch_sgd`` is torch's ``optim.SGD(momentum, weight_decay)`` without dampening or Nesterov.
"""
import mxnet as mx
from mxnet import nd


@mx.optimizer.register
class TorchSGD(mx.optimizer.Optimizer):
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
