"""Weight conversion between MXNet Gluon, PaddlePaddle and PyTorch as a few naming rules.

Every model in this project has the same module tree and attribute names in every
framework, so a parameter's path is the same everywhere and only these differ:

========================  ==============  =================  ========================
                          Gluon           Paddle             PyTorch (canonical)
========================  ==============  =================  ========================
norm scale / shift        gamma, beta     weight, bias       weight, bias
norm running statistics   running_mean,   _mean, _variance   running_mean, running_var
                          running_var
Linear weight             [out, in]       **[in, out]**      [out, in]
BN step counter           --              --                 num_batches_tracked
========================  ==============  =================  ========================

``to_canonical`` maps a framework's state to PyTorch names and layouts; every rule is
unambiguous in that direction (Paddle's only 2-D ``weight`` tensors are Linear weights).
``from_canonical`` maps back onto the names of a target model (its ``{name: shape}``): a
canonical ``weight`` becomes ``gamma`` only where the Gluon model has a ``gamma``, and is
transposed only where the Paddle model has a 2-D ``weight``.

One more rule reads this project's own older checkpoints: before 0.2 the Residual Attention
modules had names of their own, which :func:`upgrade_names` maps onto the original Gluon
code's (``features.N.trunk.`` -> ``features.N.trunk_branch.``, ``features.N.mask.`` ->
``features.N.mask_branch.``, and inside the mask branch ``down_units_k``, ``skip_k``,
``up_units_k`` -> ``down_res_unit_k``, ``skip_connection_k``, ``up_res_unit_k``). No other
model has a name of that form, so the rule applies to every checkpoint read.
"""
import re

import numpy as np

FRAMEWORKS = ("gluon", "paddle", "pytorch")

_RENAMES = {
    "gluon": {"gamma": "weight", "beta": "bias"},
    "paddle": {"_mean": "running_mean", "_variance": "running_var"},
    "pytorch": {},
}
_DROPPED = {"pytorch": ("num_batches_tracked",)}


_OLD_ATTENTION_BRANCH = re.compile(r"^(features\.\d+\.)(trunk|mask)\.")
_OLD_MASK_UNITS = re.compile(r"^(down_units|skip|up_units)_(\d+)\.")
_MASK_UNIT_NAMES = {"down_units": "down_res_unit", "skip": "skip_connection", "up_units": "up_res_unit"}


def upgrade_name(name):
    """A parameter name of this project's Residual Attention modules before 0.2 -> the
    original code's name (see the module docstring); any other name is returned as it is."""
    match = _OLD_ATTENTION_BRANCH.match(name)
    if match is None:
        return name
    prefix, branch = match.groups()
    rest = name[match.end():]
    if branch == "mask":
        rest = _OLD_MASK_UNITS.sub(lambda m: f"{_MASK_UNIT_NAMES[m[1]]}_{m[2]}.", rest)
    return f"{prefix}{branch}_branch.{rest}"


def upgrade_names(state):
    """``state`` with :func:`upgrade_name` applied to every name (same values, same order)."""
    return {upgrade_name(name): value for name, value in state.items()}


class ConversionError(ValueError):
    """Names or shapes that do not line up; the message lists every problem."""


def _split(name):
    head, _, leaf = name.rpartition(".")
    return head, leaf


def _join(head, leaf):
    return f"{head}.{leaf}" if head else leaf


def canonical_name(name, framework):
    """The PyTorch name of ``framework``'s parameter ``name``."""
    head, leaf = _split(name)
    return _join(head, _RENAMES[framework].get(leaf, leaf))


def _is_paddle_linear_weight(name, shape):
    return len(shape) == 2 and _split(name)[1] == "weight"


def to_canonical(state, framework, report=None):
    """``{framework name: array}`` -> ``{PyTorch name: array in PyTorch layout}``.

    ``report`` (a :class:`ConversionReport`) records what was renamed, transposed or dropped.
    """
    _check_framework(framework)
    out = {}
    for name, value in state.items():
        if _split(name)[1] in _DROPPED.get(framework, ()):
            if report is not None:
                report.dropped.append(name)
            continue
        canonical = canonical_name(name, framework)
        if framework == "paddle" and _is_paddle_linear_weight(name, np.shape(value)):
            value = np.ascontiguousarray(np.asarray(value).T)
            if report is not None:
                report.transposed.append(name)
        if canonical != name and report is not None:
            report.renamed.append((name, canonical))
        out[canonical] = value
    return out


def canonical_shapes(shapes, framework):
    """``{framework name: shape}`` -> ``{PyTorch name: shape in PyTorch's layout}``: the
    shapes :func:`to_canonical` would give that state (``num_batches_tracked`` dropped)."""
    _check_framework(framework)
    out = {}
    for name, shape in shapes.items():
        if _split(name)[1] in _DROPPED.get(framework, ()):
            continue
        shape = tuple(shape)
        if framework == "paddle" and _is_paddle_linear_weight(name, shape):
            shape = shape[::-1]
        out[canonical_name(name, framework)] = shape
    return out


def from_canonical(state, framework, target_shapes, report=None):
    """``{PyTorch name: array}`` -> ``{name in the target model: array in its layout}``.

    ``target_shapes`` is the target model's ``{name: shape}``; a name with no counterpart
    there is kept as it is (and reported as unexpected by :func:`match_state`)."""
    _check_framework(framework)
    native_of = {canonical_name(n, framework): n for n in target_shapes}
    out = {}
    for name, value in state.items():
        native = native_of.get(name, name)
        if framework == "paddle" and native in target_shapes and \
                _is_paddle_linear_weight(native, target_shapes[native]):
            value = np.ascontiguousarray(np.asarray(value).T)
            if report is not None:
                report.transposed.append(native)
        if native != name and report is not None:
            report.renamed.append((name, native))
        out[native] = value
    return out


class ConversionReport:
    """What a conversion did, for the CLI's summary."""

    def __init__(self):
        self.renamed, self.transposed, self.dropped = [], [], []


def match_state(source, target_shapes, what="checkpoint"):
    """Check that ``source`` ({name: array}) fills ``target_shapes`` ({name: shape}) exactly:
    every name present on both sides with the same shape (see :func:`shape_fits`). Raises :class:`ConversionError`
    listing every missing, unexpected and mismatched name."""
    missing = sorted(set(target_shapes) - set(source))
    unexpected = sorted(set(source) - set(target_shapes))
    mismatched = sorted(f"{k}: {what} {tuple(np.shape(source[k]))} vs model {tuple(target_shapes[k])}"
                        for k in set(source) & set(target_shapes)
                        if not shape_fits(np.shape(source[k]), target_shapes[k]))
    if missing or unexpected or mismatched:
        lines = [f"the {what} does not match the model:"]
        for title, names in (("missing", missing), ("unexpected", unexpected),
                             ("shape mismatch", mismatched)):
            if names:
                lines.append(f"  {title} ({len(names)}): " + ", ".join(names[:20])
                             + (" ..." if len(names) > 20 else ""))
        raise ConversionError("\n".join(lines))


def shape_fits(shape, target):
    """Whether an array of ``shape`` fits a parameter of shape ``target``, where a 0 in
    ``target`` is a dimension Gluon has not inferred yet."""
    return len(shape) == len(target) and all(t in (0, s) for s, t in zip(shape, target))


def _check_framework(framework):
    if framework not in FRAMEWORKS:
        raise ConversionError(f"unknown framework {framework!r}; expected one of {FRAMEWORKS}")
