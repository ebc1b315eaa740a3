"""Convert model checkpoints between MXNet Gluon, PaddlePaddle, PyTorch and safetensors.

    python -m scripts.convert SRC DST [--model NAME] [--from FW] [--to FW] [--check [RTOL]]

Frameworks come from the extensions (``.params`` Gluon, ``.pdparams`` Paddle, ``.pt``/``.pth``
PyTorch, ``.safetensors`` framework-neutral with PyTorch names and layouts) or from
``--from``/``--to``. Accepted sources: bare state_dicts, ``{'state_dict'|'model'|'net': ...}``
training checkpoints, ``module.``-prefixed names, Gluon ``save_parameters`` files and the
``arg:``/``aux:`` files of ``export``. Without ``--model`` the tensors must identify exactly
one registered model. Nothing is unpickled beyond plain containers and arrays; every source
tensor must fill a target tensor of the same shape, or nothing is written; DST is written
atomically and an existing one is kept unless ``--force``. ``--check`` runs one input through
the model in both frameworks and exits with 3 when their logits disagree (1: any other error).
"""
import argparse
import functools
import importlib
import json
import os
import sys
import time

import numpy as np

from common.checkpoint import (CheckpointError, load_gluon_params, load_pdparams, load_safetensors,
                               save_gluon_params, save_pdparams, save_safetensors)
from common.convert import (ConversionError, ConversionReport, from_canonical, match_state,
                            shape_fits, to_canonical, upgrade_names)
from common.registry import input_size
from parity_tests.tolerances import TOLERANCES, tolerance_units

FRAMEWORK_OF_SUFFIX = {".params": "gluon", ".pdparams": "paddle", ".pt": "pytorch", ".pth": "pytorch",
                       ".safetensors": "safetensors"}
FORMATS = ("gluon", "paddle", "pytorch", "safetensors")


def framework_of(path, given=None):
    if given:
        return given
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FRAMEWORK_OF_SUFFIX:
        raise ConversionError(f"{path}: cannot tell the framework from the extension {suffix or '(none)'}; "
                              f"use one of {', '.join(FRAMEWORK_OF_SUFFIX)} or --from/--to")
    return FRAMEWORK_OF_SUFFIX[suffix]


def _impl(framework, module=""):
    name = "pytorch" if framework == "safetensors" else framework
    return importlib.import_module(f"{name}_impl{'.' + module if module else ''}")


# --------------------------------------------------------------------------- reading and writing
def read_state(path, fmt):
    """``{name: ndarray}`` as stored (names of the format's framework), with this project's
    older Residual Attention names upgraded (:func:`common.convert.upgrade_names`)."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file")
    readers = {"gluon": load_gluon_params, "paddle": load_pdparams, "safetensors": load_safetensors,
               "pytorch": lambda p: _impl("pytorch", "weights").load_pth(p)}
    return upgrade_names(readers[fmt](path))


def write_state(state, path, fmt, model):
    if fmt == "gluon":
        save_gluon_params(state, path)
    elif fmt == "paddle":
        save_pdparams(state, path)
    elif fmt == "safetensors":
        save_safetensors(state, path, metadata={"format": "attention-ports", "model": model})
    else:
        _impl("pytorch", "weights").save_pth(state, path)


def _canonical_framework(fmt):
    return "pytorch" if fmt == "safetensors" else fmt


# --------------------------------------------------------------------------- models
def shapes(fmt, name, kwargs):
    """{name: shape} of model ``name`` as ``fmt`` stores it (safetensors: PyTorch's); each
    model is built once per process (identifying a checkpoint builds every registered one)."""
    return dict(_shapes(fmt, name, json.dumps(kwargs, sort_keys=True)))


@functools.lru_cache(maxsize=None)
def _shapes(fmt, name, kwargs_json):
    return _impl(fmt, "weights").shapes_of(name, **json.loads(kwargs_json))


def infer_num_classes(name, canonical, kwargs):
    """Read ``num_classes`` off the tensors whose shape depends on it (the classifier)."""
    if "num_classes" in kwargs:
        return kwargs
    try:
        a, b = shapes("pytorch", name, {**kwargs, "num_classes": 10}), shapes("pytorch", name, {**kwargs, "num_classes": 11})
    except TypeError:
        return kwargs
    for key in a:
        if a[key] != b[key] and key in canonical and len(canonical[key].shape) == len(a[key]):
            dim = next(i for i, (x, y) in enumerate(zip(a[key], b[key])) if x != y)
            return {**kwargs, "num_classes": int(canonical[key].shape[dim])}
    return kwargs


def _fits(canonical, target):
    return canonical.keys() == target.keys() and all(
        shape_fits(canonical[k].shape, target[k]) for k in target)


def identify(canonical, kwargs):
    """The one registered model whose tensors are exactly ``canonical``'s, with its kwargs."""
    torch_impl = _impl("pytorch")
    matches = []
    for name in torch_impl.list_models():
        default = shapes("pytorch", name, kwargs)
        if default.keys() != canonical.keys():
            continue
        model_kwargs = infer_num_classes(name, canonical, kwargs)
        if _fits(canonical, shapes("pytorch", name, model_kwargs)):
            matches.append((name, model_kwargs))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConversionError("the checkpoint's tensors match no registered model; pass --model "
                              f"(one of {', '.join(torch_impl.list_models())})")
    raise ConversionError("the checkpoint's tensors fit several models; pass --model: "
                          + ", ".join(name for name, _ in matches))


def structural_gluon_state(state, model, kwargs):
    """Map the names of an ``export``/``save_params`` file onto ``save_parameters``' names,
    with the Gluon model ``model`` or, when it is None, the one model whose names they fit."""
    impl, weights = _impl("gluon"), _impl("gluon", "weights")
    fitting = []
    for name in [model] if model else impl.list_models():
        mapped = weights.structural_names(impl.create_model(name, **kwargs), state)
        if mapped.keys() == weights.shapes_of(name, **kwargs).keys():
            fitting.append(mapped)
    if len(fitting) == 1:
        return fitting[0]
    if model:
        raise ConversionError(f"the names of this export file do not fit the Gluon model {model}")
    raise ConversionError("the names of this export file fit " + ("no" if not fitting else "several")
                          + " registered Gluon models; pass --model")


# --------------------------------------------------------------------------- conversion
class Summary:
    def __init__(self, **fields):
        self.__dict__.update(fields)

    def lines(self):
        r = self.report
        out = [f"{self.src} ({self.src_fmt}) -> {self.dst} ({self.dst_fmt})",
               f"model {self.model} {json.dumps(self.kwargs)}: {self.tensors} tensors, "
               f"{self.parameters:,} values, {self.bytes:,} bytes",
               f"renamed {len(r.renamed)}, transposed {len(r.transposed)}, dropped {len(r.dropped)}"]
        kinds = {}
        for before, after in r.renamed:
            kind = f"{before.rsplit('.', 1)[-1]} -> {after.rsplit('.', 1)[-1]}"
            kinds[kind] = kinds.get(kind, 0) + 1
        out += [f"  {kind}: {count}" for kind, count in sorted(kinds.items())]
        out += [f"  transposed {name}" for name in r.transposed[:10]]
        out += [f"  dropped {name}" for name in r.dropped[:3]] + \
            ([f"  ... and {len(r.dropped) - 3} more dropped"] if len(r.dropped) > 3 else [])
        return out


def convert(src, dst, model=None, src_fmt=None, dst_fmt=None, kwargs=None, force=False):
    """Convert ``src`` to ``dst``; returns a :class:`Summary`. Raises CheckpointError or
    ConversionError (with every problem listed) and then writes nothing."""
    src_fmt, dst_fmt = framework_of(src, src_fmt), framework_of(dst, dst_fmt)
    for fmt in (src_fmt, dst_fmt):
        if fmt not in FORMATS:
            raise ConversionError(f"unknown framework {fmt!r}; expected one of {', '.join(FORMATS)}")
    if os.path.exists(dst) and not force:
        raise ConversionError(f"{dst} exists; pass --force to replace it")
    kwargs = dict(kwargs or {})
    state = read_state(src, src_fmt)
    report = ConversionReport()
    if src_fmt == "gluon" and any(":" in k or "." not in k for k in state):
        state = structural_gluon_state(state, model, kwargs)
    canonical = to_canonical(state, _canonical_framework(src_fmt), report)
    if model is None:
        model, kwargs = identify(canonical, kwargs)
    else:
        if model not in _impl("pytorch").list_models():
            raise ConversionError(f"unknown model {model!r}; registered: "
                                  f"{', '.join(_impl('pytorch').list_models())}")
        kwargs = infer_num_classes(model, canonical, kwargs)
    match_state(canonical, shapes("pytorch", model, kwargs), what=f"checkpoint {src}")
    if model not in _impl(dst_fmt).list_models():
        have = [fw for fw in ("gluon", "paddle", "pytorch") if model in _impl(fw).list_models()]
        raise ConversionError(f"{model} has no {dst_fmt} implementation; it exists in {', '.join(have)}")
    if dst_fmt in ("pytorch", "safetensors"):
        out = canonical
    else:
        target = shapes(dst_fmt, model, kwargs)
        out = from_canonical(canonical, dst_fmt, target, report)
        match_state(out, target, what=f"converted {src}")
    write_state(out, dst, dst_fmt, model)
    values = sum(int(np.prod(v.shape)) for v in out.values())
    return Summary(src=src, dst=dst, src_fmt=src_fmt, dst_fmt=dst_fmt, model=model, kwargs=kwargs,
                   tensors=len(out), parameters=values, bytes=os.path.getsize(dst), report=report)


def check(summary, seed=0, batch=2):
    """Run one random batch through the model built in both frameworks from SRC and DST;
    returns both frameworks' logits (SRC's first)."""
    size = input_size(summary.model, **summary.kwargs)
    images = np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype(np.float32)
    logits = []
    for path, fmt in ((summary.src, summary.src_fmt), (summary.dst, summary.dst_fmt)):
        framework = _canonical_framework(fmt)
        state = read_state(path, fmt)
        impl, weights = _impl(framework), _impl(framework, "weights")
        net = impl.create_model(summary.model, **summary.kwargs)
        if framework == "gluon":
            state = weights.structural_names(net, state)
        logits.append(weights.predict(weights.load_weights(net, state), images))
    return logits


def check_line(logits, rtol):
    """One line on how far DST's logits are from SRC's, and whether they agree: elementwise
    within ``rtol * |src| + rtol / 10 * max|src|`` (the float32 parity tolerance of
    ``parity_tests/tolerances.py`` scaled to ``rtol``)."""
    expected, actual = logits
    default_rtol = TOLERANCES[np.dtype(np.float32)][0]
    units = tolerance_units(actual, expected, np.float32) * default_rtol / rtol
    verdict = "agree" if units <= 1 else "DISAGREE"
    return units <= 1, (f"check: max |logit difference| {np.abs(actual - expected).max():.3e} "
                        f"(max |logit| {np.abs(expected).max():.3e}), {units:.3g} tolerances of "
                        f"rtol {rtol:g}: the two frameworks {verdict}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m scripts.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--model", help="registered model name (default: identified from the tensors)")
    parser.add_argument("--from", dest="src_fmt", choices=FORMATS)
    parser.add_argument("--to", dest="dst_fmt", choices=FORMATS)
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--model-kwargs", default="{}", help="JSON of other constructor arguments")
    parser.add_argument("--check", nargs="?", type=float, metavar="RTOL",
                        const=TOLERANCES[np.dtype(np.float32)][0],
                        help="run one input through both models and exit with 3 unless their logits "
                             "agree within RTOL (default: the float32 parity tolerance, %(const)g "
                             "relative plus a tenth of it of the largest logit)")
    parser.add_argument("--force", action="store_true", help="replace an existing DST")
    args = parser.parse_args(argv)
    try:
        kwargs = json.loads(args.model_kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("not an object")
    except ValueError as e:
        parser.error(f"--model-kwargs must be a JSON object ({e})")
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    start = time.perf_counter()
    try:
        summary = convert(args.src, args.dst, args.model, args.src_fmt, args.dst_fmt, kwargs, args.force)
        print("\n".join(summary.lines()))
        print(f"wrote {args.dst} in {time.perf_counter() - start:.2f} s")
        if args.check is not None:
            agree, line = check_line(check(summary), args.check)
            print(line)
            if not agree:
                return 3
    except (CheckpointError, ConversionError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
