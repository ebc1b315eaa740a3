"""Convert model checkpoints between MXNet Gluon, PaddlePaddle, PyTorch and safetensors.

    python -m scripts.convert SRC DST [--model NAME] [--from FW] [--to FW] [--check [RTOL]]

A command line over :mod:`common.formats`. Frameworks come from the extensions (``.params``
Gluon, ``.pdparams`` Paddle, ``.pt``/``.pth`` PyTorch, ``.safetensors`` framework-neutral with
PyTorch names and layouts) or from ``--from``/``--to``. Accepted sources: bare state_dicts,
``{'state_dict'|'model'|'net': ...}`` training checkpoints, ``module.``-prefixed names, Gluon
``save_parameters`` files and the ``arg:``/``aux:`` files of ``export``. Without ``--model``
the tensors must identify exactly one registered model. Nothing is unpickled beyond plain
containers and arrays; every source tensor must fill a target tensor of the same shape, or
nothing is written; DST is written atomically and an existing one is kept unless ``--force``.
``--check`` runs one input through the model in both frameworks (the formats taken from the
extensions) and exits with 3 when their logits disagree (1: any other error).
"""
import argparse
import importlib
import json
import os
import sys
import time

import numpy as np

from common.checkpoint import CheckpointError
from common.convert import ConversionError, ConversionReport, match_state, to_canonical
from common.formats import (FORMATS, convert_state, format_of, identify, names_of, num_classes_of,
                            read_state, structural_gluon_state, write_state)
from common.specs import input_size
from parity_tests.tolerances import TOLERANCES, tolerance_units


def _impl(framework, module=""):
    return importlib.import_module(f"{names_of(framework)}_impl{'.' + module if module else ''}")


def shapes(fmt, name, kwargs):
    """{name: shape} of model ``name`` as ``fmt`` stores it (safetensors: PyTorch's); each
    model is built once per process (identifying a checkpoint builds every registered one)."""
    return _impl(fmt)._registry.shapes(name, **kwargs)


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
    src_fmt, dst_fmt = format_of(src, src_fmt), format_of(dst, dst_fmt)
    if os.path.exists(dst) and not force:
        raise ConversionError(f"{dst} exists; pass --force to replace it")
    names = _impl("pytorch").list_models()
    if model is not None and model not in names:
        raise ConversionError(f"unknown model {model!r}; registered: {', '.join(names)}")
    kwargs = dict(kwargs or {})
    state = read_state(src, src_fmt)
    report = ConversionReport()
    if src_fmt == "gluon":
        candidates = [model] if model else _impl("gluon").list_models()
        state = structural_gluon_state(state, [(name, kwargs) for name in candidates])
    canonical = to_canonical(state, names_of(src_fmt), report)
    if model is None:
        model, kwargs = identify(canonical, names, lambda n, kw: shapes("pytorch", n, kw), kwargs)
    elif "num_classes" not in kwargs and num_classes_of(model, canonical) is not None:
        kwargs["num_classes"] = num_classes_of(model, canonical)
    match_state(canonical, shapes("pytorch", model, kwargs), what=f"checkpoint {src}")
    if model not in _impl(dst_fmt).list_models():
        have = [fw for fw in ("gluon", "paddle", "pytorch") if model in _impl(fw).list_models()]
        raise ConversionError(f"{model} has no {dst_fmt} implementation; it exists in {', '.join(have)}")
    target = None if names_of(dst_fmt) == "pytorch" else shapes(dst_fmt, model, kwargs)
    out = convert_state(canonical, "pytorch", dst_fmt, target, report)
    if target is not None:
        match_state(out, target, what=f"converted {src}")
    write_state(out, dst, dst_fmt, model)
    values = sum(int(np.prod(v.shape)) for v in out.values())
    return Summary(src=src, dst=dst, src_fmt=src_fmt, dst_fmt=dst_fmt, model=model, kwargs=kwargs,
                   tensors=len(out), parameters=values, bytes=os.path.getsize(dst), report=report)


def logits(framework, model, kwargs, checkpoint, images, batch=64, dtype="float32"):
    """Logits of ``images`` (N x 3 x H x W) through model ``model`` built in ``framework``
    with the weights of ``checkpoint`` (any format), computed in ``dtype``."""
    weights = _impl(framework, "weights")
    net = weights.cast(_impl(framework).create_model(model, pretrained=checkpoint, **kwargs), dtype)
    images = images.astype(dtype)
    return np.concatenate([weights.predict(net, images[i:i + batch])
                           for i in range(0, len(images), batch)])


def check(summary, seed=0, batch=2):
    """Run one random batch through the model built in both frameworks from SRC and DST;
    returns both frameworks' logits (SRC's first)."""
    size = input_size(summary.model, **summary.kwargs)
    images = np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype(np.float32)
    return [logits(names_of(fmt), summary.model, summary.kwargs, path, images)
            for path, fmt in ((summary.src, summary.src_fmt), (summary.dst, summary.dst_fmt))]


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
