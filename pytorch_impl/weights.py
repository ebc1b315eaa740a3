"""PyTorch checkpoints as ``{name: ndarray}``: safe loading of what people actually have,
atomic saving, and model shapes without allocating weights."""
import pickle
import re
import struct
import zipfile

import numpy as np
import torch

from common.checkpoint import CheckpointError, atomic_open
from common.convert import ConversionError

TRAINING_CHECKPOINT_KEYS = ("state_dict", "model", "net")
#: The global a weights-only load refused, in torch's wordings: "Unsupported global: GLOBAL
#: numpy.core.multiarray._reconstruct was not an allowed global" and (torch 2.13, for a blocked
#: module) "unsupported GLOBAL posix.system whose module posix is blocked".
REFUSED_GLOBAL = re.compile(r"unsupported global:?\s+(?:global\s+)?([A-Za-z_][\w.]*)", re.IGNORECASE)


def load_pth(path):
    """Read a ``.pt``/``.pth`` file with ``weights_only=True`` (no pickled code runs).

    Accepts a bare state_dict, a training checkpoint ``{'state_dict'|'model'|'net': ...}``
    and ``module.``-prefixed (DataParallel) names. Returns ``{name: ndarray}``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except pickle.UnpicklingError as e:
        # Only the refused global is passed on: torch's message also advises weights_only=False,
        # which would run the file's code.
        found = REFUSED_GLOBAL.search(str(e))
        what = f"it would run {found.group(1)}" if found else "it is not a tensors-only pickle"
        raise CheckpointError(f"{path}: refused: {what} (nothing was run)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, struct.error) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({message})") from None
    if isinstance(obj, dict):
        for key in TRAINING_CHECKPOINT_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors (or a checkpoint holding one "
                              f"under {', '.join(TRAINING_CHECKPOINT_KEYS)})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return {k: v.detach().numpy() for k, v in obj.items()}


def save_pth(state, path):
    """Write ``{name: ndarray}`` as a state_dict file, atomically."""
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    with atomic_open(path) as f:
        torch.save(tensors, f)


def model_shapes(model):
    """``{name: shape}`` of a model's state_dict."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def shapes_of(name, **kwargs):
    """State shapes of registered model ``name`` built on the meta device (no memory)."""
    from . import create_model
    with torch.device("meta"):
        return model_shapes(create_model(name, **kwargs))


def load_weights(model, state, left=()):
    """Load ``{name: ndarray}`` into ``model`` and return it in eval mode. Every tensor of
    the model must be in ``state``, but those named in ``left``, which keep their
    initialisation (a classifier for another number of classes)."""
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False)
    missing = sorted(set(missing) - set(left))
    if missing or unexpected:
        raise ConversionError(f"the state does not fit the model: missing {missing}, unexpected {unexpected}")
    return model.eval()


def cast(model, dtype):
    """``model`` with its parameters and buffers in ``dtype`` (``"float64"``, ...)."""
    return model.to(getattr(torch, dtype))


def predict(model, images):
    """Logits of an N x 3 x H x W float32 batch, as numpy."""
    with torch.no_grad():
        return model.eval()(torch.from_numpy(images)).numpy()
