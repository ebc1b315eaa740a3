"""Train AlexNet or AlexNet-SimAM natively in PaddlePaddle with the recipe of the original
experiment (``common/alexnet_recipe.py``): label-smoothed cross entropy, Adam with coupled L2
weight decay, cosine decay stepped every iteration, optional mixup.

    python -m paddle_impl.train_alexnet --model alexnet_simam --dataset cifar10 \\
        --data-dir ../shared/data/cifar10-mini --log-dir runs/alexnet_simam

The run folder gets ``model-last.pdparams`` / ``model-best.pdparams`` (weights only), the
optimizer state ``train-state.pdopt`` and ``train-state.json`` (epoch, best accuracy: what
``--resume`` reads), ``train.log``, ``metrics.jsonl``, TensorBoard scalars,
``learning-curves.png`` after every epoch and ``predictions.png`` at the end. Paddle runs on
every core (``--threads`` to change; Paddle's own default is one thread), on ``--device``
in ``--amp``'s precision; under ``python -m paddle.distributed.launch ... python -m
paddle_impl.train_alexnet`` every process trains its share of each batch and process 0
writes the run folder (paddle_impl/session.py).
"""
import paddle

from common import alexnet_recipe
from common.alexnet_recipe import recipe_transforms  # noqa: F401  (callers take it from here)
from common.processes import Processes
from paddle_impl import create_model
from paddle_impl.session import (Placement, RunFiles, add_device_args, join_processes,
                                 soft_cross_entropy)

FRAMEWORK = "paddle"


def parse_args(argv=None):
    return alexnet_recipe.parse_args(__doc__.split("\n\n")[0], argv, add_device_args)


def make_optimizer(model, lr, wd):
    """The recipe's Adam: ``weight_decay=float`` is coupled L2 (added to the gradient)."""
    return paddle.optimizer.Adam(learning_rate=lr, parameters=model.parameters(), weight_decay=wd)


class Session(RunFiles, alexnet_recipe.Session):
    """The recipe's session (:class:`common.alexnet_recipe.Session`) in Paddle, on the
    process's device in ``--amp``'s precision (:class:`paddle_impl.session.Placement`)."""
    seed = staticmethod(paddle.seed)
    tensor = staticmethod(paddle.to_tensor)
    no_grad = staticmethod(paddle.no_grad)
    make_optimizer = staticmethod(make_optimizer)
    loss = staticmethod(soft_cross_entropy)

    def __init__(self, model, args, num_classes, processes=Processes()):
        super().__init__(model, args, num_classes, processes)
        self.placement = Placement(args, processes)
        self.net = self.placement.module(model)

    def train_step(self, model, optimizer, images, targets, lr):
        """The placement's step of ``model`` run as ``net`` (its DataParallel under the
        launcher, which averages the gradients). Evaluation runs ``model`` itself: AlexNet
        has no buffers that the processes would need to share."""
        return self.placement.train_step(self.net, optimizer, images, targets, lr)


def main(argv=None):
    args = parse_args(argv)
    with join_processes(args) as processes:
        return alexnet_recipe.train(FRAMEWORK, args, create_model, Session, processes, argv)


if __name__ == "__main__":
    main()
