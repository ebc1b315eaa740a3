"""Train UPANets in MXNet Gluon with the reference recipe (see ``common/upanets_recipe.py``).

    python -m gluon_impl.train_upanets --dataset cifar10 --data-dir ../shared/data/cifar10-mini

Writes ``model-best.params`` / ``model-last.params`` (``save_parameters``), the optimizer's
momentum buffers ``train-state.params`` and ``train-state.json``; ``--resume`` continues.
The optimizer is torch's SGD rule (``gluon_impl.torch_optim``): MXNet's own sgd differs once
the cosine schedule changes the rate. The model trains imperatively (its BatchNorms update
their running variance torch's way only there; see ``gluon_impl/layers.py``). TensorBoard
scalars go through mxboard.
"""

import mxnet as mx
import numpy as np
from mxnet import autograd

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchsgd')
from common import upanets_recipe
from common.processes import Processes
from gluon_impl import create_model
from gluon_impl.data import to_ndarrays
from gluon_impl.session import MxboardScalars, RunFiles


class Session(RunFiles):
    def __init__(self, model, args, processes=Processes()):
        self.model = model
        self.trainer = mx.gluon.Trainer(model.collect_params(), "torchsgd", {
            "learning_rate": args.lr, "momentum": upanets_recipe.MOMENTUM, "wd": args.wd})
        self.loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()

    def train_batch(self, images, labels, lr, epoch, batch):
        self.trainer.set_learning_rate(lr)
        x, y = to_ndarrays((images, labels))
        with autograd.record():
            logits = self.model(x)
            loss = self.loss(logits, y).mean()
        loss.backward()
        self.trainer.step(1)
        return float(loss.asscalar()) * len(labels), logits.argmax(1).asnumpy().astype(np.int64)

    def eval_batch(self, images, labels):
        x, y = to_ndarrays((images, labels))
        logits = self.model(x)
        return float(self.loss(logits, y).sum().asscalar()), logits.argmax(1).asnumpy().astype(np.int64)


def initialized_model(name, **kwargs):
    model = create_model(name, **kwargs)
    model.initialize(mx.init.Xavier())
    return model


def seed(n):
    mx.random.seed(n)
    np.random.seed(n)


def main(argv=None):
    return upanets_recipe.train(
        "gluon", upanets_recipe.parse("gluon", argv), initialized_model, Session, seed,
        lambda model: sum(int(np.prod(p.shape)) for p in model.collect_params().values()
                          if p.grad_req != "null"),
        argv=argv, board=MxboardScalars)


if __name__ == "__main__":
    main()
