"""Train the PyTorch port of AlexNet or AlexNet-SimAM with the recipe of the PaddlePaddle
experiment (``common/alexnet_recipe.py``), reproducing its training numerically: the same
batches and augmentation (common/), the same label-smoothing loss, Adam with coupled L2
weight decay (Paddle's ``Adam(weight_decay=float)`` = torch ``Adam(weight_decay)``), and the
same cosine rate set at every iteration over all epochs.

    python -m pytorch_impl.train_alexnet --model alexnet_simam --dataset cifar10 \\
        --data-dir ../shared/data/cifar10-mini --log-dir runs/torch-alexnet_simam
    torchrun --nproc_per_node 4 -m pytorch_impl.train_alexnet --dataset cifar10 --data-dir ...

The run folder gets ``model-last.pth`` / ``model-best.pth`` (weights only), the optimizer
state ``train-state.pth`` and ``train-state.json`` (epoch, best accuracy: what ``--resume``
reads), ``train.log``, ``metrics.jsonl``, TensorBoard scalars, and at the end
``learning-curves.png`` and ``predictions.png``. Under ``torchrun`` it trains with
DistributedDataParallel (:func:`pytorch_impl.session.join_processes`): ``--batch-size`` is
the global batch, each process takes its share of every batch, and process 0 writes the run
folder.
"""
import torch

from common import alexnet_recipe
from common.alexnet_recipe import recipe_transforms  # noqa: F401  (callers take it from here)
from common.processes import Processes
from pytorch_impl import create_model
from pytorch_impl.session import (Placement, RunFiles, add_device_args, join_processes,
                                  soft_cross_entropy)

FRAMEWORK = "pytorch"


def parse_args(argv=None):
    return alexnet_recipe.parse_args(__doc__.split("\n\n")[0], argv, add_device_args)


def make_optimizer(model, lr, wd):
    """Adam with coupled L2 weight decay, as Paddle's ``Adam(weight_decay=float)``."""
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)


class Session(RunFiles, alexnet_recipe.Session):
    """The recipe's session (:class:`common.alexnet_recipe.Session`) in PyTorch, on
    ``--device`` in ``--amp``'s precision (:class:`pytorch_impl.session.Placement`). ``model``
    holds the weights and evaluates (the model has no buffers: every process evaluates its
    share alike); ``net`` trains them (DistributedDataParallel under ``torchrun``)."""
    seed = staticmethod(torch.manual_seed)
    no_grad = staticmethod(torch.no_grad)
    make_optimizer = staticmethod(make_optimizer)
    loss = staticmethod(soft_cross_entropy)

    def __init__(self, model, args, num_classes, processes=Processes()):
        self.placement = Placement(args, processes)
        self.net = self.placement.parallel(model)
        super().__init__(model, args, num_classes, processes)
        self.tensor = self.placement.tensor

    def set_mode(self, train):
        self.net.train(train)

    def train_step(self, model, *step):
        """The recipe's step of ``model`` (the weights), run through ``net``."""
        return self.placement.train_step(self.net, *step)

    @staticmethod
    def numpy(tensor):
        return tensor.cpu().numpy()


def main(argv=None):
    args = parse_args(argv)
    with join_processes(args) as processes:
        return alexnet_recipe.train(FRAMEWORK, args, create_model, Session, processes, argv)


if __name__ == "__main__":
    main()
