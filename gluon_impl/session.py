"""What a Gluon train session (see ``common/fit.py``) writes to and reads from its run folder:
``save_parameters`` weights and the Trainer's momentum by parameter name, both ``.params``;
and its dashboard scalars, through mxboard."""
import mxnet as mx

from common.checkpoint import atomic_path, load_gluon_params, save_gluon_params
from common.convert import match_state, upgrade_names
from gluon_impl import weights


class RunFiles:
    """Checkpoint methods of a session that has ``model``, ``trainer`` and ``ctx``."""
    weights_ext = optimizer_ext = "params"
    ctx = mx.cpu()

    def save_weights(self, path):
        with atomic_path(path) as tmp:
            self.model.save_parameters(tmp)

    def load_weights(self, path):
        """The run's own weights (this project's older names upgraded), checked against the
        model's shapes, copied into its parameters (their dtype and context)."""
        state = upgrade_names(load_gluon_params(path))
        match_state(state, weights.model_shapes(self.model), path)
        weights.load_weights(self.model, state, ctx=self.ctx)

    def momentum_slots(self):
        """{parameter name: the index of its state in the Trainer's updater}."""
        index = {id(p): i for i, p in enumerate(self.trainer._params)}
        return {name: index[id(p)] for name, p in self.model._collect_params_with_prefix().items()}

    def save_optimizer(self, path):
        states = self.trainer._updaters[0].states
        save_gluon_params({name: states[i].asnumpy() for name, i in self.momentum_slots().items()
                           if states.get(i) is not None}, path)

    def load_optimizer(self, path):
        updater, saved = self.trainer._updaters[0], upgrade_names(load_gluon_params(path))
        for name, i in self.momentum_slots().items():
            if name in saved:
                updater.states[i] = mx.nd.array(saved[name], dtype=saved[name].dtype, ctx=self.ctx)
                updater.states_synced[i] = True


class MxboardScalars:
    """RunLog's scalar writer through mxboard (tensorboard's protobufs clash with MXNet's)."""

    def __init__(self, log_dir):
        from mxboard import SummaryWriter
        self._writer = SummaryWriter(logdir=log_dir)

    def scalar(self, tag, value, step):
        self._writer.add_scalar(tag, value, step)

    def close(self):
        self._writer.close()
