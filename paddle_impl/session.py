"""What a Paddle train session (see ``common/fit.py``) writes to and reads from its run
folder: the model's weights alone (``.pdparams``) and the optimizer state (``.pdopt``, under
the parameters' structural names: :mod:`paddle_impl.optim_state`)."""
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
