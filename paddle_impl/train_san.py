"""Train the Paddle port of SAN (paddle_impl/models/san.py) with the recipe of
``pytorch_impl.train_san`` (flags, YAML configs, loaders and the run in common/san_recipe.py):
SGD with momentum 0.9 and weight decay 1e-4, cosine learning rate per epoch, label smoothing
0.1, top-1/top-5.

    python -m paddle_impl.train_san                       # embedded digits, 32x32, smoke run
    python -m paddle_impl.train_san --dataset cifar10 --data-dir ../shared/data/cifar10-mini
    python -m paddle.distributed.launch --devices 0,1,2,3 python -m paddle_impl.train_san ...

Under ``paddle.distributed.launch`` it trains with ``paddle.DataParallel`` (nccl on GPUs,
gloo on CPUs: see paddle_impl/session.py): ``--batch-size`` is the global batch, each process
takes its share of every batch, and process 0 writes the run folder: ``train.log``,
``metrics.jsonl``, TensorBoard scalars, ``model-last.pdparams`` / ``model-best.pdparams``
(weights only) and ``train-state.pdopt`` + ``train-state.json`` (optimizer; epoch and best
accuracy) for ``--resume``.
"""
import paddle

from common import san_recipe
from paddle_impl import create_model
from paddle_impl.session import (Placement, RunFiles, add_device_args, join_processes,
                                 soft_cross_entropy)


def make_optimizer(model, args):
    """The recipe's SGD: ``weight_decay=float`` is coupled L2, as torch's."""
    return paddle.optimizer.Momentum(learning_rate=args.lr, momentum=args.momentum,
                                     weight_decay=args.wd, parameters=model.parameters())


class Session(RunFiles, san_recipe.Session):
    """The recipe's session (:class:`common.san_recipe.Session`) in Paddle, on the process's
    device in ``--amp``'s precision, through :class:`paddle_impl.session.DataParallel` under
    the launcher (:class:`paddle_impl.session.Placement`)."""
    tensor = staticmethod(paddle.to_tensor)
    numpy = staticmethod(paddle.Tensor.numpy)
    no_grad = staticmethod(paddle.no_grad)
    make_optimizer = staticmethod(make_optimizer)
    loss = staticmethod(soft_cross_entropy)

    def place(self, model, processes):
        self.placement = Placement(self.args, processes)
        return self.placement.module(model)

    def train_step(self, *step):
        return self.placement.train_step(*step)


def main(argv=None):
    args = san_recipe.parse_args(__doc__.split("\n\n")[0], argv, add_device_args)
    with join_processes(args) as processes:
        return san_recipe.train(
            "paddle", args, create_model, Session, paddle.seed,
            lambda model: sum(p.size for p in model.parameters() if not p.stop_gradient),
            processes, argv)


if __name__ == "__main__":
    main()
