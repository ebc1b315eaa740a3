"""Train UPANets in PaddlePaddle with the reference recipe (see ``common/upanets_recipe.py``).

    python -m paddle_impl.train_upanets --dataset cifar10 --data-dir ../shared/data/cifar10-mini
    python -m paddle.distributed.launch --devices 0,1 python -m paddle_impl.train_upanets ...

``--device`` and ``--amp`` choose where and in what precision it runs; under
``paddle.distributed.launch`` every process trains its share of each batch and process 0
writes the run folder (paddle_impl/session.py).

Writes ``model-best.pdparams`` / ``model-last.pdparams`` (``model.state_dict()`` alone), the
optimizer state ``train-state.pdopt`` and ``train-state.json``; ``--resume`` continues.
"""

import numpy as np
import paddle
import paddle.nn.functional as F

from common import upanets_recipe
from common.processes import Processes
from paddle_impl import create_model
from paddle_impl.data import to_tensors
from paddle_impl.session import Placement, RunFiles, add_device_args, join_processes


class Session(RunFiles):
    """UPANets' recipe in Paddle, for :func:`common.fit.fit`: ``model`` holds the weights,
    ``net`` runs them (:class:`paddle_impl.session.Placement`)."""

    def __init__(self, model, args, processes=Processes()):
        self.model = model
        self.placement = Placement(args, processes)
        self.net = self.placement.module(model)
        self.optimizer = paddle.optimizer.Momentum(
            learning_rate=args.lr, momentum=upanets_recipe.MOMENTUM,
            parameters=model.parameters(), weight_decay=args.wd)

    def train_batch(self, images, labels, lr, epoch, batch):
        self.optimizer.set_lr(lr)
        x, y = to_tensors((images, labels))
        self.net.train()
        with self.placement.autocast():
            logits = self.net(x).astype("float32")
        loss = F.cross_entropy(logits, y)
        self.placement.step(loss, self.optimizer)
        return float(loss) * len(labels), logits.argmax(1).numpy()

    @paddle.no_grad()
    def eval_batch(self, images, labels):
        x, y = to_tensors((images, labels))
        self.net.eval()
        logits = self.net(x)
        return float(F.cross_entropy(logits, y, reduction="sum")), logits.argmax(1).numpy()


def main(argv=None):
    args = upanets_recipe.parse("paddle", argv, add_device_args)
    with join_processes(args) as processes:
        return upanets_recipe.train(
            "paddle", args, create_model, Session, paddle.seed,
            lambda model: sum(int(np.prod(p.shape)) for p in model.parameters()
                              if not p.stop_gradient), processes, argv)


if __name__ == "__main__":
    main()
