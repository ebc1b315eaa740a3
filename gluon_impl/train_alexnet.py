"""Train the MXNet Gluon port of AlexNet or AlexNet-SimAM with the recipe of the PaddlePaddle
experiment (``common/alexnet_recipe.py``), reproducing its training numerically: the same
batches and augmentation (common/), the same label-smoothing loss, Adam with coupled L2
weight decay (Paddle's ``Adam(weight_decay=float)`` = ``torchadam`` of
``gluon_impl/torch_optim.py``; MXNet's own ``adam`` places epsilon differently), and the same
cosine rate set at every iteration over all epochs.

    python -m gluon_impl.train_alexnet --model alexnet_simam --dataset cifar10 \\
        --data-dir ../shared/data/cifar10-mini --log-dir runs/gluon-alexnet_simam

The run folder gets ``model-last.params`` / ``model-best.params`` (``save_parameters``;
weights only), the optimizer state ``train-state.params`` (each parameter's Adam step, m and
v, by name) and ``train-state.json`` (epoch, best accuracy: what ``--resume`` reads),
``train.log``, ``metrics.jsonl``, TensorBoard scalars, and at the end
``learning-curves.png`` and ``predictions.png``. The model starts from Paddle's default
initialisation, the native recipe's, drawn from MXNet's generator.
"""
import mxnet as mx
from mxnet import autograd

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchadam')
from common import alexnet_recipe
from common.alexnet_recipe import recipe_transforms  # noqa: F401  (callers take it from here)
from gluon_impl import create_model
from gluon_impl.session import RunFiles, soft_cross_entropy, train_step

FRAMEWORK = "gluon"


def parse_args(argv=None):
    return alexnet_recipe.parse_args(__doc__.split("\n\n")[0], argv)


def initialized_model(name, **kwargs):
    """Model ``name`` with Paddle's default initialisation: convolution weights
    Normal(0, sqrt(2 / fan_in)), Linear weights XavierUniform, biases zero."""
    model = create_model(name, **kwargs)
    model.collect_params(".*conv.*_weight").initialize(mx.init.MSRAPrelu("in", 0.0))
    model.collect_params(".*dense.*_weight").initialize(mx.init.Xavier("uniform", "avg", 3))
    model.collect_params(".*_bias").initialize(mx.init.Zero())
    return model


def make_optimizer(model, lr, wd):
    """Adam with coupled L2 weight decay on every parameter, as Paddle's
    ``Adam(weight_decay=float)``."""
    return mx.gluon.Trainer(model.collect_params(), "torchadam", {"learning_rate": lr, "wd": wd})


class Session(RunFiles, alexnet_recipe.Session):
    """The recipe's session (:class:`common.alexnet_recipe.Session`) in Gluon: train mode is
    ``autograd.record()`` inside :func:`train_step`, so ``set_mode`` has nothing to do."""
    seed = staticmethod(mx.random.seed)
    tensor = staticmethod(mx.nd.array)
    numpy = staticmethod(mx.nd.NDArray.asnumpy)
    no_grad = staticmethod(autograd.pause)
    make_optimizer = staticmethod(make_optimizer)
    train_step = staticmethod(train_step)
    loss = staticmethod(soft_cross_entropy)

    def set_mode(self, train):
        pass

    @property
    def trainer(self):
        return self.optimizer


def main(argv=None):
    return alexnet_recipe.train(FRAMEWORK, parse_args(argv), initialized_model, Session, argv=argv)


if __name__ == "__main__":
    main()
