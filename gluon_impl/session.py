"""What a Gluon train session (see ``common/fit.py``) writes to and reads from its run folder:
``save_parameters`` weights and the Trainer's optimizer state by parameter name, both
``.params``; its dashboard scalars, through mxboard; and the soft-target step of the recipes
that train with dense (smoothed, mixed) targets."""
import mxnet as mx
from mxnet import autograd

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
        """Each parameter's optimizer state under its name: one array (momentum) as
        ``<name>``, a tuple of arrays (``torchadam``'s step, m, v) as ``<name>.0``,
        ``<name>.1``, ..."""
        states, out = self.trainer._updaters[0].states, {}
        for name, i in self.momentum_slots().items():
            state = states.get(i)
            if isinstance(state, (tuple, list)):
                out.update({f"{name}.{k}": s.asnumpy() for k, s in enumerate(state)})
            elif state is not None:
                out[name] = state.asnumpy()
        save_gluon_params(out, path)

    def load_optimizer(self, path):
        updater, saved = self.trainer._updaters[0], upgrade_names(load_gluon_params(path))

        def array(key):
            return mx.nd.array(saved[key], dtype=saved[key].dtype, ctx=self.ctx)

        for name, i in self.momentum_slots().items():
            if name in saved:
                updater.states[i] = array(name)
            elif f"{name}.0" in saved:
                count = sum(1 for k in saved if k.rpartition(".")[0] == name)
                updater.states[i] = tuple(array(f"{name}.{k}") for k in range(count))
            else:
                continue
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


def soft_cross_entropy(logits, targets):
    """Batch mean of ``sum(-targets * log_softmax(logits))``; with
    :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    ``(1 - e) * nll + e * mean_k(-log p_k)`` (as ``paddle_impl.session.soft_cross_entropy``)."""
    return -(targets * mx.nd.log_softmax(logits, axis=1)).sum(axis=1).mean()


def train_step(model, trainer, images, targets, lr):
    """One step of the Gluon ``trainer`` at learning rate ``lr`` on the soft-target loss (the
    batch mean, so the Trainer steps with 1); returns (loss, logits)."""
    trainer.set_learning_rate(lr)
    with autograd.record():
        logits = model(images)
        loss = soft_cross_entropy(logits, targets)
    loss.backward()
    trainer.step(1)
    return loss, logits
