"""Train the MXNet Gluon port of SAN (gluon_impl/models/san.py) with the recipe of
``pytorch_impl.train_san`` (flags, YAML configs, loaders and the run in common/san_recipe.py),
SGD with momentum 0.9 and weight decay 1e-4, cosine learning rate per epoch, label
smoothing 0.1, top-1/top-5.

    python -m gluon_impl.train_san                        # embedded digits, 32x32, smoke run
    python -m gluon_impl.train_san --dataset cifar10 --data-dir ../shared/data/cifar10-mini
    python -m gluon_impl.train_san --ctx gpu0,gpu1 --amp  # each batch split across 2 GPUs
    python -m scripts.launch_gluon -n 2 -m gluon_impl.train_san ...   # 2 dist_sync workers

Where and how precisely it runs: ``--ctx``, ``--amp``, ``--kvstore``
(:mod:`gluon_impl.session`).

The run folder holds ``train.log``, ``metrics.jsonl``, ``model-last.params`` /
``model-best.params`` (``save_parameters``) and ``train-state.params`` + ``train-state.json``
(the optimizer's momentum by parameter name; epoch and best accuracy) for ``--resume``.
The optimizer is torch's SGD rule (``gluon_impl.torch_optim``: MXNet's own sgd differs once
the cosine schedule changes the rate). The model trains hybridized, its batch norms' running
variance brought to torch's rule after each step (``gluon_impl.layers.TorchRunningVariance``). Weights start from
torch's default bound, U(+-1/sqrt(fan_in)), with zero biases.
"""
import contextlib
import functools

import mxnet as mx
import numpy as np

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchsgd')
from common import san_recipe
from common.labels import one_hot
from gluon_impl import create_model
from gluon_impl.session import (Placement, RunFiles, add_device_args, check_device_args,
                                join_processes, soft_cross_entropy)


class Modes:
    """What the recipe's session calls ``net``: ``model`` with ``train()`` / ``eval()``,
    which have nothing to do in Gluon (train mode is ``autograd.record()``)."""

    def __init__(self, model):
        self.model = model

    def train(self):
        pass

    def eval(self):
        pass


def make_optimizer(model, args, trainer=mx.gluon.Trainer):
    return trainer(model.collect_params(), "torchsgd", {
        "learning_rate": args.lr, "momentum": args.momentum, "wd": args.wd})


class Session(RunFiles, san_recipe.Session):
    """The recipe's session (:class:`common.san_recipe.Session`) in Gluon, on ``--ctx`` in
    ``--amp``'s precision (:class:`gluon_impl.session.Placement`), which takes the numpy
    batches."""
    tensor = numpy = staticmethod(np.asarray)
    no_grad = staticmethod(contextlib.nullcontext)  # nothing is recorded outside autograd.record
    loss = staticmethod(functools.partial(soft_cross_entropy, reduction="none"))

    def place(self, model, processes):
        self.placement = Placement(self.args, processes)
        return Modes(self.placement.module(model, hybridize=True))

    def make_optimizer(self, model, args):
        return make_optimizer(model, args, self.placement.trainer)

    def train_step(self, net, trainer, images, targets, lr):
        loss, logits = self.placement.train_step(net.model, trainer, images, targets, lr, self.loss)
        return loss / len(images), logits

    def eval_batch(self, images, labels):
        loss, logits = self.placement.eval_step(self.model, images,
                                                one_hot(labels, self.num_classes), self.loss)
        return loss, san_recipe.ranked_classes(logits)

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
    args = check_device_args(san_recipe.parse_args(__doc__.split("\n\n")[0], argv,
                                                   add_device_args))
    return san_recipe.train("gluon", args, initialized_model, Session, seed, count_parameters,
                            join_processes(args), argv=argv)


if __name__ == "__main__":
    main()
