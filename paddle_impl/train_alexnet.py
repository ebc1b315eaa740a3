"""Train AlexNet or AlexNet-SimAM natively in PaddlePaddle with the recipe of the original
experiment (``common/alexnet_recipe.py``): label-smoothed cross entropy, Adam with coupled L2
weight decay, cosine decay stepped every iteration, optional mixup.

    python -m paddle_impl.train_alexnet --model alexnet_simam --dataset cifar10 \\
        --data-dir ../shared/data/cifar10-mini --log-dir runs/alexnet_simam

The run folder gets ``model-last.pdparams`` / ``model-best.pdparams`` (weights only), the
optimizer state ``train-state.pdopt`` and ``train-state.json`` (epoch, best accuracy: what
``--resume`` reads), ``train.log``, ``metrics.jsonl``, TensorBoard scalars, and at the end
``learning-curves.png`` and ``predictions.png``. On CPU, Paddle uses one thread unless
``OMP_NUM_THREADS`` is set before it starts.
"""
import sys

import paddle

from common import alexnet_recipe
from common.alexnet_recipe import MODELS, recipe_transforms  # noqa: F401  (the recipe's, here too)
from common.checkpoint import CheckpointError, atomic_path, load_pdparams
from common.convert import ConversionError, match_state
from paddle_impl import create_model, optim_state

FRAMEWORK = "paddle"


def parse_args(argv=None):
    return alexnet_recipe.parse_args(__doc__.split("\n\n")[0], argv)


def soft_cross_entropy(logits, targets):
    """Batch mean of ``sum(-targets * log_softmax(logits))``; with
    :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    ``(1 - e) * nll + e * mean_k(-log p_k)``.

    The log-probabilities are ``logits - logsumexp(logits)``: Paddle's CPU
    ``F.log_softmax`` (3.3.1) clips ``logits - max`` at -64, which changes the loss and its
    gradient once the logits of a row spread wider than 64 (it happens in the first
    iterations with Paddle's default initialisation)."""
    log_p = logits - paddle.logsumexp(logits, axis=1, keepdim=True)
    return -(targets * log_p).sum(axis=1).mean()


def make_optimizer(model, lr, wd):
    """The recipe's Adam: ``weight_decay=float`` is coupled L2 (added to the gradient)."""
    return paddle.optimizer.Adam(learning_rate=lr, parameters=model.parameters(), weight_decay=wd)


def train_step(model, optimizer, images, targets, lr):
    """One Adam step at learning rate ``lr``; returns (loss, logits)."""
    optimizer.set_lr(lr)
    logits = model(images)
    loss = soft_cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    return loss, logits


class Session:
    """The recipe's numerics in Paddle, for :func:`common.fit.fit`."""
    weights_ext, optimizer_ext = "pdparams", "pdopt"

    def __init__(self, model, args, num_classes):
        self.model, self.args = model, args
        self.optimizer = make_optimizer(model, args.lr, args.wd)
        self.targets = alexnet_recipe.Targets(args, num_classes)

    def train_batch(self, images, labels, lr, epoch, batch):
        if batch == 0:
            paddle.seed(alexnet_recipe.dropout_seed(self.args, epoch))
        self.model.train()
        images, targets = self.targets.train(images, labels, epoch, batch)
        loss, logits = train_step(self.model, self.optimizer, paddle.to_tensor(images),
                                  paddle.to_tensor(targets), lr)
        return float(loss) * len(labels), logits.numpy().argmax(1)

    @paddle.no_grad()
    def eval_batch(self, images, labels):
        self.model.eval()
        logits = self.model(paddle.to_tensor(images))
        loss = soft_cross_entropy(logits, paddle.to_tensor(self.targets.eval(labels)))
        return float(loss) * len(labels), logits.numpy().argmax(1)

    def save_weights(self, path):
        with atomic_path(path) as tmp:
            paddle.save(self.model.state_dict(), tmp)

    def load_weights(self, path):
        state = load_pdparams(path)
        match_state(state, {k: v.shape for k, v in self.model.state_dict().items()}, path)
        self.model.set_state_dict(state)

    def save_optimizer(self, path):
        optim_state.save(self.model, self.optimizer, path)

    def load_optimizer(self, path):
        optim_state.load(self.model, self.optimizer, path)


def main(argv=None):
    return alexnet_recipe.train(FRAMEWORK, parse_args(argv), paddle.seed, create_model, Session)


if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, ConversionError) as e:
        sys.exit(f"error: {e}")
