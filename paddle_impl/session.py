"""The pieces of a Paddle train session (see ``common/fit.py``): what it writes to and reads
from its run folder (the model's weights alone, ``.pdparams``, and the optimizer state,
``.pdopt``, under the parameters' structural names: :mod:`paddle_impl.optim_state`), and the
soft-target step of the recipes that train with dense (smoothed, mixed) targets."""
import paddle

from common.checkpoint import atomic_path, load_pdparams
from common.convert import match_state
from paddle_impl import optim_state
from paddle_impl.weights import model_shapes


class RunFiles:
    """Checkpoint methods of a session that has ``model`` and ``optimizer``."""
    weights_ext, optimizer_ext = "pdparams", "pdopt"

    def save_weights(self, path):
        with atomic_path(path) as tmp:
            paddle.save(self.model.state_dict(), tmp)

    def load_weights(self, path):
        state = load_pdparams(path)
        match_state(state, model_shapes(self.model), path)
        self.model.set_state_dict(state)

    def save_optimizer(self, path):
        optim_state.save(self.model, self.optimizer, path)

    def load_optimizer(self, path):
        optim_state.load(self.model, self.optimizer, path)


def soft_cross_entropy(logits, targets, reduction="mean"):
    """Batch mean (or, with ``reduction="sum"``, the sum: Gluon's per-sample losses, as its
    backward sees them) of ``sum(-targets * log_softmax(logits))``; with
    :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    ``(1 - e) * nll + e * mean_k(-log p_k)``.

    The log-probabilities are ``logits - logsumexp(logits)``: Paddle's CPU
    ``F.log_softmax`` (3.3.1) clips ``logits - max`` at -64, which changes the loss and its
    gradient once the logits of a row spread wider than 64 (it happens in the first
    iterations with Paddle's default initialisation)."""
    log_p = logits - paddle.logsumexp(logits, axis=1, keepdim=True)
    per_sample = (targets * log_p).sum(axis=1)
    return -(per_sample.sum() if reduction == "sum" else per_sample.mean())


def train_step(model, optimizer, images, targets, lr):
    """One step of ``optimizer`` at learning rate ``lr`` on the soft-target loss; returns
    (loss, logits)."""
    optimizer.set_lr(lr)
    logits = model(images)
    loss = soft_cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    return loss, logits
