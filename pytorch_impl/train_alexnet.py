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
import sys

import torch
import torch.nn.functional as F

from common import alexnet_recipe
from common.alexnet_recipe import MODELS, recipe_transforms  # noqa: F401  (the recipe's, here too)
from common.checkpoint import CheckpointError, atomic_path
from common.convert import ConversionError, match_state
from pytorch_impl import create_model

FRAMEWORK = "pytorch"


def parse_args(argv=None):
    return alexnet_recipe.parse_args(__doc__.split("\n\n")[0], argv)


def soft_cross_entropy(logits, targets):
    """Batch mean of ``sum(-targets * log_softmax(logits))``; with
    :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    (= ``F.cross_entropy(label_smoothing=e)``)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def make_optimizer(model, lr, wd):
    """Adam with coupled L2 weight decay, as Paddle's ``Adam(weight_decay=float)``."""
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)


def train_step(model, optimizer, images, targets, lr):
    """One Adam step at learning rate ``lr``; returns (loss, logits)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(images)
    loss = soft_cross_entropy(logits, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


class Session:
    """The recipe's numerics in PyTorch, for :func:`common.fit.fit`."""
    weights_ext = optimizer_ext = "pth"

    def __init__(self, model, args, num_classes):
        self.model, self.args = model, args
        self.optimizer = make_optimizer(model, args.lr, args.wd)
        self.targets = alexnet_recipe.Targets(args, num_classes)

    def train_batch(self, images, labels, lr, epoch, batch):
        if batch == 0:
            torch.manual_seed(alexnet_recipe.dropout_seed(self.args, epoch))
        self.model.train()
        images, targets = self.targets.train(images, labels, epoch, batch)
        loss, logits = train_step(self.model, self.optimizer, torch.from_numpy(images),
                                  torch.from_numpy(targets), lr)
        return float(loss) * len(labels), logits.numpy().argmax(1)

    @torch.no_grad()
    def eval_batch(self, images, labels):
        self.model.eval()
        logits = self.model(torch.from_numpy(images))
        loss = soft_cross_entropy(logits, torch.from_numpy(self.targets.eval(labels)))
        return float(loss) * len(labels), logits.numpy().argmax(1)

    def save_weights(self, path):
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)

    def load_weights(self, path):
        state = torch.load(path, weights_only=True)
        match_state(state, {k: v.shape for k, v in self.model.state_dict().items()}, path)
        self.model.load_state_dict(state)

    def save_optimizer(self, path):
        with atomic_path(path) as tmp:
            torch.save(self.optimizer.state_dict(), tmp)

    def load_optimizer(self, path):
        self.optimizer.load_state_dict(torch.load(path, weights_only=True))


def main(argv=None):
    return alexnet_recipe.train(FRAMEWORK, parse_args(argv), torch.manual_seed, create_model,
                                Session)


if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, ConversionError) as e:
        sys.exit(f"error: {e}")
