"""Train the MXNet Gluon port of SAN (gluon_impl/models/san.py) with the recipe of
``pytorch_impl.train_san`` (flags, YAML configs, loaders and the run in common/san_recipe.py),
in one process: SGD with momentum 0.9 and weight decay 1e-4, cosine learning rate per epoch,
label smoothing 0.1, top-1/top-5.

    python -m gluon_impl.train_san                        # embedded digits, 32x32, smoke run
    python -m gluon_impl.train_san --dataset cifar10 --data-dir ../shared/data/cifar10-mini

The run folder holds ``train.log``, ``metrics.jsonl``, ``model-last.params`` /
``model-best.params`` (``save_parameters``) and ``train-state.params`` + ``train-state.json``
(the optimizer's momentum by parameter name; epoch and best accuracy) for ``--resume``.
The optimizer is torch's SGD rule (``gluon_impl.torch_optim``: MXNet's own sgd differs once
the cosine schedule changes the rate). The model trains imperatively, where its batch norms
update their running variance torch's way (see ``gluon_impl/layers.py``). Weights start from
torch's default bound, U(+-1/sqrt(fan_in)), with zero biases.
"""
import contextlib

import mxnet as mx
import numpy as np
from mxnet import autograd

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchsgd')
from common import san_recipe
from gluon_impl import create_model
from gluon_impl.session import RunFiles


class Modes:
    """The module a session runs: ``model`` called in train or predict mode, as set by
    ``train()`` / ``eval()`` (Gluon blocks have no mode of their own)."""

    def __init__(self, model):
        self.model, self.training = model, False

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def __call__(self, x):
        with autograd.train_mode() if self.training else autograd.predict_mode():
            return self.model(x)


def soft_cross_entropy(logits, targets):
    """Batch mean of ``sum(-targets * log_softmax(logits))`` (the recipe's label smoothing
    with :func:`common.labels.smooth_uniform` targets)."""
    return -(targets * mx.nd.log_softmax(logits, axis=1)).sum(axis=1).mean()


def train_step(net, trainer, images, targets, lr):
    """One step of the recipe's SGD at rate ``lr``; returns (loss, logits)."""
    trainer.set_learning_rate(lr)
    with autograd.record():
        logits = net(images)
        loss = soft_cross_entropy(logits, targets)
    loss.backward()
    trainer.step(1)  # the loss is already the batch mean
    return loss.asscalar(), logits


def make_optimizer(model, args):
    return mx.gluon.Trainer(model.collect_params(), "torchsgd", {
        "learning_rate": args.lr, "momentum": args.momentum, "wd": args.wd})


def tensor(array):
    """A float32 (images, targets) or int64 NDArray of a numpy array."""
    dtype = "float32" if np.issubdtype(array.dtype, np.floating) else "int64"
    return mx.nd.array(array, dtype=dtype)


class Session(RunFiles, san_recipe.Session):
    """The recipe's session (:class:`common.san_recipe.Session`) in Gluon."""
    tensor = staticmethod(tensor)
    numpy = staticmethod(mx.nd.NDArray.asnumpy)
    no_grad = staticmethod(contextlib.nullcontext)  # nothing is recorded outside autograd.record
    make_optimizer = staticmethod(make_optimizer)
    train_step = staticmethod(train_step)

    @staticmethod
    def loss(logits, targets):
        return soft_cross_entropy(logits, targets).asscalar()

    def place(self, model, processes):
        return Modes(model)

    @property
    def trainer(self):  # RunFiles' name for the optimizer
        return self.optimizer


def initialized_model(name, **kwargs):
    model = create_model(name, **kwargs)
    model.initialize(mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1))
    return model


def seed(n):
    mx.random.seed(n)
    np.random.seed(n)


def count_parameters(model):
    return sum(int(np.prod(p.shape)) for p in model.collect_params().values() if p.grad_req != "null")


def main(argv=None):
    args = san_recipe.parse_args(__doc__.split("\n\n")[0], argv)
    return san_recipe.train("gluon", args, initialized_model, Session, seed, count_parameters,
                            argv=argv)


if __name__ == "__main__":
    main()
