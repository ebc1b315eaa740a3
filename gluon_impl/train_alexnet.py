"""Train the MXNet Gluon port of AlexNet or AlexNet-SimAM with the recipe of the PaddlePaddle
experiment (``common/alexnet_recipe.py``), reproducing its training numerically: the same
batches and augmentation (common/), the same label-smoothing loss, Adam with coupled L2
weight decay (Paddle's ``Adam(weight_decay=float)`` = ``torchadam`` of
``gluon_impl/torch_optim.py``; MXNet's own ``adam`` places epsilon differently), and the same
cosine rate set at every iteration over all epochs.

    python -m gluon_impl.train_alexnet --model alexnet_simam --dataset cifar10 \\
        --data-dir ../shared/data/cifar10-mini --log-dir runs/gluon-alexnet_simam
    python -m gluon_impl.train_alexnet --ctx gpu0,gpu1 --amp    # each batch split across 2 GPUs
    python -m scripts.launch_gluon -n 2 -m gluon_impl.train_alexnet ...   # 2 dist_sync workers

Where and how precisely it runs: ``--ctx``, ``--amp``, ``--kvstore`` (:mod:`gluon_impl.session`).
The model trains and evaluates hybridized, as the other Gluon scripts (the same results;
evaluation 1.1 times as fast, a train step as fast: AlexNet's time is in its convolutions).

The run folder gets ``model-last.params`` / ``model-best.params`` (``save_parameters``;
weights only), the optimizer state ``train-state.params`` (each parameter's Adam step, m and
v, by name) and ``train-state.json`` (epoch, best accuracy: what ``--resume`` reads),
``train.log``, ``metrics.jsonl``, TensorBoard scalars, and at the end
``learning-curves.png`` and ``predictions.png``. The model starts from Paddle's default
initialisation, the native recipe's, drawn from MXNet's generator.
"""
import functools

import mxnet as mx
import numpy as np
from mxnet import autograd

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchadam')
from common import alexnet_recipe
from common.alexnet_recipe import recipe_transforms  # noqa: F401  (callers take it from here)
from common.processes import Processes
from gluon_impl import create_model
from gluon_impl.session import (Placement, RunFiles, add_device_args, check_device_args,
                                join_processes, soft_cross_entropy)
from gluon_impl.session import train_step  # noqa: F401  (the parity tests' one-context step)

FRAMEWORK = "gluon"


def parse_args(argv=None):
    return check_device_args(alexnet_recipe.parse_args(__doc__.split("\n\n")[0], argv,
                                                       add_device_args))


def initialized_model(name, **kwargs):
    """Model ``name`` with Paddle's default initialisation: convolution weights
    Normal(0, sqrt(2 / fan_in)), Linear weights XavierUniform, biases zero."""
    model = create_model(name, **kwargs)
    model.collect_params(".*conv.*_weight").initialize(mx.init.MSRAPrelu("in", 0.0))
    model.collect_params(".*dense.*_weight").initialize(mx.init.Xavier("uniform", "avg", 3))
    model.collect_params(".*_bias").initialize(mx.init.Zero())
    return model


def make_optimizer(model, lr, wd, trainer=mx.gluon.Trainer):
    """Adam with coupled L2 weight decay on every parameter, as Paddle's
    ``Adam(weight_decay=float)``; ``trainer`` builds it (a Placement's, in a script)."""
    return trainer(model.collect_params(), "torchadam", {"learning_rate": lr, "wd": wd})


class Session(RunFiles, alexnet_recipe.Session):
    """The recipe's session (:class:`common.alexnet_recipe.Session`) in Gluon, on ``--ctx``
    in ``--amp``'s precision (:class:`gluon_impl.session.Placement`), which takes the numpy
    batches; train mode is ``autograd.record()``, so ``set_mode`` has nothing to do."""
    seed = staticmethod(mx.random.seed)
    tensor = numpy = staticmethod(np.asarray)
    no_grad = staticmethod(autograd.pause)
    loss = staticmethod(functools.partial(soft_cross_entropy, reduction="none"))

    def __init__(self, model, args, num_classes, processes=Processes()):
        self.placement = Placement(args, processes)
        super().__init__(self.placement.module(model, hybridize=True), args, num_classes, processes)

    def make_optimizer(self, model, lr, wd):
        return make_optimizer(model, lr, wd, self.placement.trainer)

    def train_step(self, model, trainer, images, targets, lr):
        loss, logits = self.placement.train_step(model, trainer, images, targets, lr, self.loss)
        return loss / len(images), logits

    def eval_batch(self, images, labels):
        loss, logits = self.placement.eval_step(self.model, images, self.targets(labels), self.loss)
        return loss, logits.argmax(1)

    def set_mode(self, train):
        pass

    @property
    def trainer(self):
        return self.optimizer


def main(argv=None):
    args = parse_args(argv)
    return alexnet_recipe.train(FRAMEWORK, args, initialized_model, Session, join_processes(args),
                                argv=argv)


if __name__ == "__main__":
    main()
