"""What a PyTorch train session (see ``common/fit.py``) writes to and reads from its run
folder: ``model.state_dict()`` alone and ``optimizer.state_dict()``, both ``.pth``."""
import torch

from common.checkpoint import atomic_path
from common.convert import match_state
from pytorch_impl.weights import model_shapes


class RunFiles:
    """Checkpoint methods of a session that has ``model`` and ``optimizer``."""
    weights_ext = optimizer_ext = "pth"

    def save_weights(self, path):
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)

    def load_weights(self, path):
        state = torch.load(path, weights_only=True)
        match_state(state, model_shapes(self.model), path)
        self.model.load_state_dict(state)

    def save_optimizer(self, path):
        with atomic_path(path) as tmp:
            torch.save(self.optimizer.state_dict(), tmp)

    def load_optimizer(self, path):
        self.optimizer.load_state_dict(torch.load(path, weights_only=True))
