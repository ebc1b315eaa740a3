"""Gluon checkpoints as ``{name: ndarray}``: structural names of ``save_parameters``, the
``arg:``/``aux:`` names of ``export`` mapped onto them, model shapes and loading."""
import mxnet as mx

from common.convert import ConversionError

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

def load_weights(model, state, left=(), ctx=None):
    """Load ``{structural name: ndarray}`` into ``model`` (initialised first where it is
    not) and return it. Every parameter must be in ``state``, but those named in ``left``,
    which keep their initialisation (a classifier for another number of classes)."""
    params = model._collect_params_with_prefix()
    missing, unexpected = sorted(set(params) - set(state) - set(left)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise ConversionError(f"the state does not fit the model: missing {missing}, unexpected {unexpected}")
    ctx = ctx or mx.cpu()
    for p in params.values():
        if p._data is None:
            p.initialize(ctx=ctx)
    for name, value in state.items():
        params[name].set_data(mx.nd.array(value, dtype=value.dtype, ctx=ctx))
    return model


def cast(model, dtype):
    """``model`` with its parameters in ``dtype`` (``"float64"``, ...)."""
    model.cast(dtype)
    return model


def predict(model, images):
    """Logits of an N x 3 x H x W batch (inference mode), as numpy."""
    return model(mx.nd.array(images, dtype=images.dtype)).asnumpy()
