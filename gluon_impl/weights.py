"""Gluon checkpoints as ``{name: ndarray}``: structural names of ``save_parameters``, the
``arg:``/``aux:`` names of ``export`` mapped onto them, model shapes and loading."""
import os
import tempfile

import mxnet as mx

from common.checkpoint import save_gluon_params

def model_shapes(model):
    """``{structural name: shape}``; a 0 marks a dimension Gluon infers at the first call."""
    return {k: tuple(p.shape) for k, p in model._collect_params_with_prefix().items()}

def shapes_of(name, **kwargs):
    from . import create_model
    return model_shapes(create_model(name, **kwargs))

def _unprefixed(name):
    """``attentionnet3_stage1_conv0_weight`` -> ``stage1_conv0_weight``: drop the root block's
    prefix, whose counter depends on how many models a process has built."""
    return name.split("_", 1)[1] if "_" in name else name

def structural_names(model, state):
    """Rename an ``export`` / ``save_params`` state (``arg:``/``aux:`` and prefixed names) to
    the structural names of ``save_parameters``; a structural state passes through."""
    structural = model._collect_params_with_prefix()
    if set(state) <= set(structural):
        return state
    by_prefixed = {_unprefixed(p.name): k for k, p in structural.items()}
    out = {}
    for name, value in state.items():
        bare = name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name
        out[by_prefixed.get(_unprefixed(bare), name)] = value
    return out

def load_weights(model, state, ctx=None):
    """Load ``{structural name: ndarray}`` into ``model`` with ``load_parameters`` (strict)."""
    fd, path = tempfile.mkstemp(suffix=".params")
    os.close(fd)
    try:
        save_gluon_params(state, path)
        model.load_parameters(path, ctx=ctx or mx.cpu())
    finally:
        os.unlink(path)
    return model

def predict(model, images):
    """Logits of an N x 3 x H x W batch (inference mode), as numpy."""
    return model(mx.nd.array(images, dtype=images.dtype)).asnumpy()
