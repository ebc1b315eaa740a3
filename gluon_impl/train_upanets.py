"""Train UPANets in MXNet Gluon with the reference recipe (see ``common/upanets_recipe.py``).

    python -m gluon_impl.train_upanets --dataset cifar10 --data-dir ../shared/data/cifar10-mini
    python -m gluon_impl.train_upanets --ctx gpu0,gpu1 --amp    # each batch split across 2 GPUs
    python -m scripts.launch_gluon -n 2 -m gluon_impl.train_upanets ...   # 2 dist_sync workers

Where and how precisely it runs: ``--ctx``, ``--amp``, ``--kvstore`` (:mod:`gluon_impl.session`).

Writes ``model-best.params`` / ``model-last.params`` (``save_parameters``), the optimizer's
momentum buffers ``train-state.params`` and ``train-state.json``; ``--resume`` continues.
The optimizer is torch's SGD rule (``gluon_impl.torch_optim``): MXNet's own sgd differs once
the cosine schedule changes the rate. The model trains hybridized, its BatchNorms' running
variance brought to torch's rule after each step (``gluon_impl.layers.TorchRunningVariance``).
TensorBoard scalars go through mxboard.
"""

import mxnet as mx
import numpy as np

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchsgd')
from common import upanets_recipe
from common.processes import Processes
from gluon_impl import create_model
from gluon_impl.session import (MxboardScalars, Placement, RunFiles, add_device_args,
                                check_device_args, join_processes)


class Session(RunFiles):
    """The recipe's SGD on the cross-entropy, on ``--ctx`` in ``--amp``'s precision
    (:class:`gluon_impl.session.Placement`)."""

    def __init__(self, model, args, processes=Processes()):
        self.placement = Placement(args, processes)
        self.model = self.placement.module(model, hybridize=True)
        self.trainer = self.placement.trainer(model.collect_params(), "torchsgd", {
            "learning_rate": args.lr, "momentum": upanets_recipe.MOMENTUM, "wd": args.wd})
        self.loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()

    def train_batch(self, images, labels, lr, epoch, batch):
        loss, logits = self.placement.train_step(self.model, self.trainer, images, labels, lr,
                                                 self.loss)
        return loss, logits.argmax(1).astype(np.int64)

    def eval_batch(self, images, labels):
        loss, logits = self.placement.eval_step(self.model, images, labels, self.loss)
        return loss, logits.argmax(1).astype(np.int64)


def initialized_model(name, **kwargs):
    model = create_model(name, **kwargs)
    model.initialize(mx.init.Xavier())
    return model


def seed(n):
    mx.random.seed(n)
    np.random.seed(n)


def main(argv=None):
    args = check_device_args(upanets_recipe.parse("gluon", argv, add_device_args))
    return upanets_recipe.train(
        "gluon", args, initialized_model, Session, seed,
        lambda model: sum(int(np.prod(p.shape)) for p in model.collect_params().values()
                          if p.grad_req != "null"),
        join_processes(args), argv=argv, board=MxboardScalars)


if __name__ == "__main__":
    main()
