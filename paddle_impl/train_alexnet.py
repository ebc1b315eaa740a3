"""Train AlexNet or AlexNet-SimAM natively in PaddlePaddle with the recipe of the original
experiment (``common/alexnet_recipe.py``): label-smoothed cross entropy, Adam with coupled L2
weight decay, cosine decay stepped every iteration, optional mixup.

    python -m paddle_impl.train_alexnet --model alexnet_simam --dataset cifar10 \\
        --data-dir ../shared/data/cifar10-mini --log-dir runs/alexnet_simam

The run folder gets ``model-last.pdparams`` / ``model-best.pdparams`` (weights only), the
optimizer state ``train-state.pdopt`` and ``train-state.json`` (epoch, best accuracy: what
``--resume`` reads), ``train.log``, ``metrics.jsonl``, TensorBoard scalars,
``learning-curves.png`` after every epoch and ``predictions.png`` at the end. Paddle runs on
every core (``--threads`` to change; Paddle's own default is one thread).
"""
import paddle

from common import alexnet_recipe
from common.alexnet_recipe import recipe_transforms  # noqa: F401  (callers take it from here)
from paddle_impl import create_model
from paddle_impl.session import RunFiles, soft_cross_entropy, train_step

FRAMEWORK = "paddle"


def parse_args(argv=None):
    return alexnet_recipe.parse_args(__doc__.split("\n\n")[0], argv)


def make_optimizer(model, lr, wd):
    """The recipe's Adam: ``weight_decay=float`` is coupled L2 (added to the gradient)."""
    return paddle.optimizer.Adam(learning_rate=lr, parameters=model.parameters(), weight_decay=wd)


class Session(RunFiles, alexnet_recipe.Session):
    """The recipe's session (:class:`common.alexnet_recipe.Session`) in Paddle."""
    seed = staticmethod(paddle.seed)
    tensor = staticmethod(paddle.to_tensor)
    no_grad = staticmethod(paddle.no_grad)
    make_optimizer = staticmethod(make_optimizer)
    train_step = staticmethod(train_step)
    loss = staticmethod(soft_cross_entropy)


def main(argv=None):
    return alexnet_recipe.train(FRAMEWORK, parse_args(argv), create_model, Session, argv=argv)


if __name__ == "__main__":
    main()
