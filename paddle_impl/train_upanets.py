"""Train UPANets in PaddlePaddle with the reference recipe (see ``common/upanets_recipe.py``).

    python -m paddle_impl.train_upanets --dataset cifar10 --data-dir ../shared/data/cifar10-mini

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
from paddle_impl.session import RunFiles


class Session(RunFiles):
    """UPANets' recipe in Paddle, for :func:`common.fit.fit`."""

    def __init__(self, model, args, processes=Processes()):
        self.model = model
        self.optimizer = paddle.optimizer.Momentum(
            learning_rate=args.lr, momentum=upanets_recipe.MOMENTUM,
            parameters=model.parameters(), weight_decay=args.wd)

    def train_batch(self, images, labels, lr, epoch, batch):
        self.optimizer.set_lr(lr)
        x, y = to_tensors((images, labels))
        self.model.train()
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        return float(loss) * len(labels), logits.argmax(1).numpy()

    @paddle.no_grad()
    def eval_batch(self, images, labels):
        x, y = to_tensors((images, labels))
        self.model.eval()
        logits = self.model(x)
        return float(F.cross_entropy(logits, y, reduction="sum")), logits.argmax(1).numpy()


def main(argv=None):
    return upanets_recipe.train(
        "paddle", upanets_recipe.parse("paddle", argv), create_model, Session, paddle.seed,
        lambda model: sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient),
        argv=argv)


if __name__ == "__main__":
    main()
