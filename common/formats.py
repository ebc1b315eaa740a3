"""Checkpoint formats, once: which extension is which format, the safe reader and writer of
each, the conversion of a state between frameworks, and the weights of a checkpoint of any
format for a model of any framework.

================  ============  ==========  ==================================================
extension         format        names of    reader / writer
================  ============  ==========  ==================================================
``.params``       gluon         Gluon       :func:`common.checkpoint.load_gluon_params` / save
``.pdparams``     paddle        Paddle      :func:`common.checkpoint.load_pdparams` / save
``.pt``, ``.pth`` pytorch       PyTorch     ``pytorch_impl.weights.load_pth`` / ``save_pth``
``.safetensors``  safetensors   PyTorch     :func:`common.checkpoint.load_safetensors` / save
================  ============  ==========  ==================================================

Reading runs no pickled code (only plain containers and arrays are accepted) and upgrades this
project's older names (:func:`common.convert.upgrade_names`); writing is atomic. The PyTorch
format needs torch, imported only when a ``.pt``/``.pth`` file is read or written; an MXNet
``export`` file (``arg:``/``aux:`` names) needs MXNet to find its parameters' structural names.
Nothing here imports a framework otherwise.
"""
import importlib
import os

import numpy as np

from .checkpoint import (CheckpointError, load_gluon_params, load_pdparams, load_safetensors,
                         save_gluon_params, save_pdparams, save_safetensors)
from .convert import (ConversionError, canonical_shapes, from_canonical, match_state, shape_fits,
                      to_canonical, upgrade_names)
from .specs import SPECS

FORMATS = ("gluon", "paddle", "pytorch", "safetensors")
SUFFIXES = {".params": "gluon", ".pdparams": "paddle", ".pt": "pytorch", ".pth": "pytorch",
            ".safetensors": "safetensors"}
#: the extension a format is written with
EXTENSION = {"gluon": ".params", "paddle": ".pdparams", "pytorch": ".pth", "safetensors": ".safetensors"}


def _pth():
    return importlib.import_module("pytorch_impl.weights")


_READERS = {"gluon": load_gluon_params, "paddle": load_pdparams, "safetensors": load_safetensors,
            "pytorch": lambda path: _pth().load_pth(path)}
_WRITERS = {"gluon": lambda state, path, model: save_gluon_params(state, path),
            "paddle": lambda state, path, model: save_pdparams(state, path),
            "safetensors": lambda state, path, model: save_safetensors(
                state, path, metadata={"format": "attention-ports", "model": model or ""}),
            "pytorch": lambda state, path, model: _pth().save_pth(state, path)}


def format_of(path, given=None):
    """The format of ``path``: ``given`` when set, else the one its extension names."""
    if given:
        if given not in FORMATS:
            raise ConversionError(f"unknown format {given!r}; expected one of {', '.join(FORMATS)}")
        return given
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in SUFFIXES:
        raise ConversionError(f"{path}: cannot tell the framework from the extension {suffix or '(none)'}; "
                              f"use one of {', '.join(SUFFIXES)} or --from/--to")
    return SUFFIXES[suffix]


def names_of(fmt):
    """The framework whose names and layouts format ``fmt`` stores."""
    return "pytorch" if fmt == "safetensors" else fmt


def read_state(path, fmt=None):
    """``{name: ndarray}`` of checkpoint ``path`` as stored (the names of its format's
    framework), with this project's older names upgraded."""
    fmt = format_of(path, fmt)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file")
    return upgrade_names(_READERS[fmt](path))


def write_state(state, path, fmt=None, model=None):
    """Write ``{name: ndarray}`` (names of the format's framework) to ``path`` atomically;
    ``model`` is recorded where the format has metadata (safetensors)."""
    _WRITERS[format_of(path, fmt)](state, path, model)


def convert_state(state, source, target, target_shapes=None, report=None):
    """``state`` under the names and layouts of framework (or format) ``source`` -> those of
    ``target``. ``target_shapes`` (the target model's ``{name: shape}``) is needed for Gluon
    and Paddle targets, whose names depend on the model (see :mod:`common.convert`)."""
    canonical = to_canonical(state, names_of(source), report)
    if names_of(target) == "pytorch":
        return canonical
    if target_shapes is None:
        raise ConversionError(f"converting to {target} needs the target model's shapes")
    return from_canonical(canonical, names_of(target), target_shapes, report)


def structural_gluon_state(state, candidates):
    """Map the ``arg:``/``aux:`` (or prefixed) names of an MXNet ``export`` file onto
    ``save_parameters``' structural names, with the Gluon model among ``candidates``
    (``[(name, kwargs)]``) whose names they fit; a structural state passes through."""
    if not any(":" in k or "." not in k for k in state):
        return state
    gluon, weights = importlib.import_module("gluon_impl"), importlib.import_module("gluon_impl.weights")
    fitting = []
    for name, kwargs in candidates:
        mapped = weights.structural_names(gluon.create_model(name, **kwargs), state)
        if mapped.keys() == weights.shapes_of(name, **kwargs).keys():
            fitting.append(mapped)
    if len(fitting) == 1:
        return fitting[0]
    if len(candidates) == 1:
        raise ConversionError(f"the names of this export file do not fit the Gluon model {candidates[0][0]}")
    raise ConversionError("the names of this export file fit " + ("no" if not fitting else "several")
                          + " registered Gluon models; pass --model")


# --------------------------------------------------------------------------- models
def num_classes_of(name, canonical):
    """The number of classes of a canonical state of model ``name``: the rows of its
    classifier's weight (the model's spec names the classifier); None without one."""
    weight = SPECS[name].classifier_names()[0] if name in SPECS else None
    value = canonical.get(weight)
    return int(np.shape(value)[0]) if value is not None and np.ndim(value) == 2 else None


def _fits(canonical, target):
    return canonical.keys() == target.keys() and all(
        shape_fits(np.shape(canonical[k]), target[k]) for k in target)


def identify(canonical, names, shapes_of, kwargs=None):
    """The one model among ``names`` whose canonical shapes are exactly ``canonical``'s:
    ``(name, kwargs)`` with ``num_classes`` read off the classifier. ``shapes_of(name,
    kwargs)`` gives a model's canonical ``{name: shape}``."""
    kwargs, matches = dict(kwargs or {}), []
    for name in names:
        if shapes_of(name, kwargs).keys() != canonical.keys():
            continue
        model_kwargs = dict(kwargs)
        classes = num_classes_of(name, canonical)
        if classes is not None and "num_classes" not in kwargs:
            model_kwargs["num_classes"] = classes
        if _fits(canonical, shapes_of(name, model_kwargs)):
            matches.append((name, model_kwargs))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConversionError("the checkpoint's tensors match no registered model; pass --model "
                              f"(one of {', '.join(names)})")
    raise ConversionError("the checkpoint's tensors fit several models; pass --model: "
                          + ", ".join(name for name, _ in matches))


def state_for_model(path, framework, name, kwargs, shapes_of, fmt=None, state=None):
    """The weights of checkpoint ``path`` (any format, written by any framework) for model
    ``name`` built in ``framework`` with ``kwargs``; ``shapes_of(kwargs)`` gives that model's
    ``{name: shape}``. Returns ``(state, kwargs, left)``: the state under ``framework``'s
    names, ``kwargs`` with ``num_classes`` (the checkpoint's when not given), and the names
    of the classifier's tensors left to the model's initialisation when ``num_classes``
    differs from the checkpoint's. ``state``: the file's :func:`read_state`, when a caller
    has read it already. Raises ConversionError listing every mismatch."""
    fmt = format_of(path, fmt)
    state = read_state(path, fmt) if state is None else state
    if fmt == "gluon":
        state = structural_gluon_state(state, [(name, {k: v for k, v in kwargs.items() if k != "num_classes"})])
    canonical = to_canonical(state, names_of(fmt))
    classes = num_classes_of(name, canonical)
    kwargs = dict(kwargs)
    kwargs.setdefault("num_classes", classes if classes is not None else SPECS[name].num_classes)
    target = shapes_of(kwargs)
    expected = canonical_shapes(target, framework)
    left = ()
    if classes is not None and classes != kwargs["num_classes"]:
        dropped = SPECS[name].classifier_names()
        canonical = {k: v for k, v in canonical.items() if k not in dropped}
        expected = {k: v for k, v in expected.items() if k not in dropped}
        left = tuple(k for k in target if canonical_shapes({k: target[k]}, framework).keys() & set(dropped))
    match_state(canonical, expected, what=f"checkpoint {path}")
    native = canonical if framework == "pytorch" else from_canonical(canonical, framework, target)
    return native, kwargs, left
