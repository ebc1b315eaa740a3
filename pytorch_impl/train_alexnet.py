"""Train the PyTorch port of AlexNet or AlexNet-SimAM with the recipe of the PaddlePaddle
experiment (``common/alexnet_recipe.py``), reproducing its training numerically: the same
batches and augmentation (common/), the same label-smoothing loss, Adam with coupled L2
weight decay (Paddle's ``Adam(weight_decay=float)`` = torch ``Adam(weight_decay)``), and the
same cosine rate set at every iteration over all epochs.

    python -m pytorch_impl.train_alexnet --model alexnet_simam --dataset cifar10 \\
        --data-dir ../shared/data/cifar10-mini --log-dir runs/torch-alexnet_simam

The run folder gets ``model-last.pth`` / ``model-best.pth`` (weights only), the optimizer
state ``train-state.pth`` and ``train-state.json`` (epoch, best accuracy: what ``--resume``
reads), ``train.log``, ``metrics.jsonl``, TensorBoard scalars, and at the end
``learning-curves.png`` and ``predictions.png``.
"""
import torch

from common import alexnet_recipe
from common.alexnet_recipe import recipe_transforms  # noqa: F401  (callers take it from here)
from pytorch_impl import create_model
from pytorch_impl.session import RunFiles, soft_cross_entropy, train_step

FRAMEWORK = "pytorch"


def parse_args(argv=None):
    return alexnet_recipe.parse_args(__doc__.split("\n\n")[0], argv)


def make_optimizer(model, lr, wd):
    """Adam with coupled L2 weight decay, as Paddle's ``Adam(weight_decay=float)``."""
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)


class Session(RunFiles, alexnet_recipe.Session):
    """The recipe's session (:class:`common.alexnet_recipe.Session`) in PyTorch."""
    seed = staticmethod(torch.manual_seed)
    tensor = staticmethod(torch.from_numpy)
    no_grad = staticmethod(torch.no_grad)
    make_optimizer = staticmethod(make_optimizer)
    train_step = staticmethod(train_step)
    loss = staticmethod(soft_cross_entropy)


def main(argv=None):
    return alexnet_recipe.train(FRAMEWORK, parse_args(argv), create_model, Session, argv)


if __name__ == "__main__":
    main()
