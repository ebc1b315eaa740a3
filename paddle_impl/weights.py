"""Paddle model shapes without allocating weights, loading and inference."""
import warnings

import numpy as np
import paddle

from common.convert import ConversionError


def model_shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def shapes_of(name, **kwargs):
    """State shapes of registered model ``name`` built lazily (no memory)."""
    from . import create_model
    with paddle.LazyGuard():
        return model_shapes(create_model(name, **kwargs))


def numpy_dtype(tensor):
    """The numpy dtype of a Paddle tensor (``paddle.float64`` -> ``float64``)."""
    return np.dtype(str(tensor.dtype).rpartition(".")[2])


def load_weights(model, state, left=()):
    """Load ``{name: ndarray}`` into ``model`` and return it in eval mode, each array cast to
    its tensor's dtype (Paddle refuses another; a float64 run may start from float32 weights,
    as in MXNet and PyTorch). Every tensor of the model must be in ``state`` (Paddle itself
    only warns), but those named in ``left``, which keep their initialisation (a classifier
    for another number of classes)."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state) - set(left)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConversionError(f"the state does not fit the model: missing {missing}, unexpected {unexpected}")
    with warnings.catch_warnings():  # Paddle warns about each tensor ``left`` keeps
        warnings.simplefilter("ignore")
        model.set_state_dict({k: np.ascontiguousarray(v, dtype=numpy_dtype(own[k]))
                              for k, v in state.items()})
    return model.eval()


def cast(model, dtype):
    """``model`` with its parameters and buffers in ``dtype`` (``"float64"``, ...)."""
    model.to(dtype=dtype)
    return model


def predict(model, images):
    with paddle.no_grad():
        return model.eval()(paddle.to_tensor(images)).numpy()
