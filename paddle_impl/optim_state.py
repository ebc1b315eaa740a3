"""A Paddle optimizer's state saved under the model's structural parameter names.

Paddle keys an optimizer's accumulators by global parameter names
(``linear_3.w_0_moment1_0``), which depend on how many layers the process built before; the
checkpoint (``.pdopt``, a pickled dict of numpy arrays) stores them as
``<structural name>@<accumulator>`` (``classifier.6.weight@moment1_0``), which any process
that builds the same model can load.
"""
import numpy as np

from common.checkpoint import CheckpointError, load_pdparams, save_pdparams


def save(model, optimizer, path):
    """Write ``optimizer``'s accumulators to ``path`` (atomically). The rate is not saved:
    the train scripts set it at every step from their schedule."""
    structural = {p.name: n for n, p in model.named_parameters()}
    state = {}
    for key, value in optimizer.state_dict().items():
        if key == "LR_Scheduler":
            continue
        owner = next((p for p in structural if key.startswith(p + "_")), None)
        if owner is None:
            raise CheckpointError(f"{path}: optimizer state {key!r} belongs to no parameter")
        state[f"{structural[owner]}@{key[len(owner) + 1:]}"] = np.asarray(value)
    save_pdparams(state, path)


def load(model, optimizer, path):
    """Load the accumulators :func:`save` wrote into ``optimizer`` (built on ``model``)."""
    native = {n: p.name for n, p in model.named_parameters()}
    state = {}
    for key, value in load_pdparams(path).items():
        name, _, accumulator = key.partition("@")
        if name not in native:
            raise CheckpointError(f"{path}: optimizer state for {name!r}, which "
                                  f"{type(model).__name__} does not have")
        state[f"{native[name]}_{accumulator}"] = value
    optimizer.set_state_dict(state)
