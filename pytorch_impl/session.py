"""The pieces of a PyTorch train session (see ``common/fit.py``): what it writes to and reads
from its run folder (``model.state_dict()`` alone and ``optimizer.state_dict()``, both
``.pth``, read onto the CPU and copied to the model's device), and the soft-target step of the
recipes that train with dense (smoothed, mixed) targets."""
import torch
import torch.nn.functional as F

from common.checkpoint import atomic_path
from common.convert import match_state, upgrade_names
from pytorch_impl.weights import model_shapes


class RunFiles:
    """Checkpoint methods of a session that has ``model`` and ``optimizer``."""
    weights_ext = optimizer_ext = "pth"

    def save_weights(self, path):
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)

    def load_weights(self, path):
        state = upgrade_names(torch.load(path, map_location="cpu", weights_only=True))
        match_state(state, model_shapes(self.model), path)
        self.model.load_state_dict(state)

    def save_optimizer(self, path):
        with atomic_path(path) as tmp:
            torch.save(self.optimizer.state_dict(), tmp)

    def load_optimizer(self, path):
        self.optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def soft_cross_entropy(logits, targets):
    """Batch mean of ``sum(-targets * log_softmax(logits))``; with
    :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    (= ``F.cross_entropy(label_smoothing=e)``)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def train_step(model, optimizer, images, targets, lr):
    """One step of ``optimizer`` at learning rate ``lr`` on the soft-target loss; returns
    (loss, logits)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(images)
    loss = soft_cross_entropy(logits, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()
