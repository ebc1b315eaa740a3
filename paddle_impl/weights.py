"""Paddle model shapes without allocating weights, loading and inference."""
import numpy as np
import paddle


def model_shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def shapes_of(name, **kwargs):
    """State shapes of registered model ``name`` built lazily (no memory)."""
    from . import create_model
    with paddle.LazyGuard():
        return model_shapes(create_model(name, **kwargs))


def load_weights(model, state):
    """Load ``{name: ndarray}`` into ``model`` and return it in eval mode. Names and shapes
    must have been checked (Paddle only warns on a mismatch)."""
    model.set_state_dict({k: np.ascontiguousarray(v) for k, v in state.items()})
    return model.eval()


def predict(model, images):
    with paddle.no_grad():
        return model.eval()(paddle.to_tensor(images)).numpy()
