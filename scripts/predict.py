"""Classify images with a trained checkpoint, in the framework you pick.

    attention-ports-predict CHECKPOINT IMAGE|FOLDER|GLOB ... [--framework pytorch|paddle|gluon]
        [--model NAME] [-k 5] [-b 32] [--classes FILE] [--json OUT] [--csv OUT] [--compile]

The model comes from the model card beside the checkpoint (``model.json``: model, arguments,
normalisation, class names), or is identified from the tensors (``--model`` names it when
they do not). The checkpoint may be of any format and framework; ``--framework`` runs it in
another (default: the one that wrote it). Each image is decoded with Pillow (RGB) and goes
through the recipe's test transform (:func:`common.transforms.inference`); batches run with
a progress bar on a terminal. Prints a table of the top-k classes with their probabilities,
or writes ``--json``/``--csv`` (``-``: standard output). Class names come from the card or
``--classes`` (one name a line), else the class indices. ``--compile`` runs a PyTorch model
through torch.compile (:func:`pytorch_impl.session.compiled`): worth it for many batches.

An unreadable image is reported on stderr in one line and the others are still classified;
the exit code is then 1. A checkpoint or class file that cannot be used is one line and
exit 2.
"""
import argparse
import csv
import glob
import importlib
import json
import os
import sys

import numpy as np

from common.checkpoint import CheckpointError, atomic_open
from common.convert import ConversionError
from common.data import IMAGE_EXTENSIONS, DatasetError, ImageFolder
from common.convert import to_canonical
from common.formats import format_of, names_of, num_classes_of, read_state
from common.memory import keep_freed_memory
from common.runs import progress
from common.specs import SPECS, model_card, read_model_card
from common.transforms import inference, resize_image

FRAMEWORKS = ("pytorch", "paddle", "gluon")
#: a family whose recipe resamples its test images with another filter than Pillow's bilinear
RECIPE_RESIZE = {"alexnet": resize_image}


class UsageError(ValueError):
    """A checkpoint, model or class file that cannot be used (exit 2)."""


def expand(inputs):
    """Image files of ``inputs`` (files, folders searched recursively, globs), in order,
    each once; the inputs that name nothing are returned apart."""
    files, missing = [], []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(root, f) for root, _, names in os.walk(item)
                           for f in names if f.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.exists(item):
            found = [item]
        else:
            found = sorted(glob.glob(item, recursive=True))
        if not found:
            missing.append(item)
        files += [f for f in found if f not in files]
    return files, missing


def load(checkpoint, framework=None, model=None, compile_model=False):
    """``(model, framework, card)``: the checkpoint's model built in ``framework`` (default:
    the framework that wrote it), in eval mode (through torch.compile with
    ``compile_model``: PyTorch only; a Gluon model hybridized, the same operators run as one
    graph, 1.1-1.4 times as fast), and what predicting needs of it: the model card beside
    it, or one made from the model's spec."""
    card = read_model_card(checkpoint)
    framework = framework or (card or {}).get("framework") or names_of(format_of(checkpoint))
    if compile_model and framework != "pytorch":
        raise UsageError(f"--compile: torch.compile runs PyTorch models; this one runs in "
                         f"{framework} (--framework pytorch converts it)")
    impl = importlib.import_module(f"{framework}_impl")
    if model is None:
        model, kwargs = impl.resolve_checkpoint(checkpoint)
    elif card is not None and card["model"] == model:
        kwargs = card["kwargs"]
    else:
        fmt = format_of(checkpoint)
        kwargs = {"num_classes": num_classes_of(model, to_canonical(read_state(checkpoint, fmt), names_of(fmt)))}
    net = impl.create_model(model, pretrained=checkpoint, **kwargs)
    if framework == "gluon":
        net.hybridize(static_alloc=True)
    if card is None or card["model"] != model:
        card = model_card(model, framework, kwargs)
    if compile_model:
        from pytorch_impl.session import compiled
        net = compiled(net.eval(), "cpu")
    return net, framework, card


def read_classes(path, count):
    """Class names, one a line, of a file that must name exactly ``count``."""
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise UsageError(f"--classes {path}: {e.strerror or e}") from None
    if len(names) != count:
        raise UsageError(f"--classes {path}: {len(names)} names for a model of {count} classes")
    return names


def softmax(logits):
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def classify(net, framework, card, files, top_k=5, batch_size=32):
    """Yield ``(file, [(class index, probability)] best first)`` for each readable file and
    ``(file, DatasetError)`` for each other, in the order of ``files``."""
    predict = importlib.import_module(f"{framework}_impl.weights").predict
    family = SPECS[card["model"]].family
    resize = {"resize": RECIPE_RESIZE[family]} if family in RECIPE_RESIZE else {}
    transform = inference(card["input_size"], card["mean"], card["std"], **resize)
    images = ImageFolder(files)
    bar = progress(range(0, len(files), batch_size), -(-len(files) // batch_size), "predict")
    for start in bar:
        batch, done = [], []
        for i in range(start, min(start + batch_size, len(files))):
            try:
                batch.append(transform(images[i], None))
                done.append((files[i], None))
            except DatasetError as e:
                done.append((files[i], e))
        probabilities = iter(softmax(predict(net, np.stack(batch))) if batch else ())
        for path, error in done:
            if error is not None:
                yield path, error
                continue
            p = next(probabilities)
            best = np.argsort(-p, kind="stable")[:top_k]
            yield path, [(int(c), float(p[c])) for c in best]


def write_table(rows, names, out):
    width = max([len(path) for path, _ in rows] + [5])
    print(f"{'image':<{width}}  top classes (probability)", file=out)
    for path, top in rows:
        print(f"{path:<{width}}  " + ", ".join(f"{names[c]} ({p:.4f})" for c, p in top), file=out)


def write_json(rows, names, out):
    json.dump([{"image": path, "top": [{"class": names[c], "index": c, "probability": p} for c, p in top]}
               for path, top in rows], out, indent=1)
    out.write("\n")


def write_csv(rows, names, out):
    writer = csv.writer(out)
    writer.writerow(["image", "rank", "class", "index", "probability"])
    for path, top in rows:
        for rank, (c, p) in enumerate(top, start=1):
            writer.writerow([path, rank, names[c], c, f"{p:.6g}"])


def _write(writer, rows, names, target):
    if target == "-":
        writer(rows, names, sys.stdout)
    else:
        with atomic_open(target, "w") as f:
            writer(rows, names, f)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="attention-ports-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or globs")
    parser.add_argument("--framework", choices=FRAMEWORKS, default=None,
                        help="run the model in this framework (default: the checkpoint's own)")
    parser.add_argument("--model", default=None, help="registry name (default: the card's, or identified)")
    parser.add_argument("-k", "--top-k", type=int, default=5, help="classes to report per image (default 5)")
    parser.add_argument("-b", "--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--classes", default=None, help="file of class names, one a line")
    parser.add_argument("--json", default=None, metavar="OUT", help="write JSON to OUT (-: stdout)")
    parser.add_argument("--csv", default=None, metavar="OUT", help="write CSV to OUT (-: stdout)")
    parser.add_argument("--compile", action="store_true",
                        help="run a PyTorch model through torch.compile (the first batch compiles)")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be at least 1")
    keep_freed_memory()
    files, missing = expand(args.inputs)
    failed = bool(missing)
    for item in missing:
        print(f"error: {item}: no such image, folder or match", file=sys.stderr)
    try:
        net, framework, card = load(args.checkpoint, args.framework, args.model, args.compile)
        names = (read_classes(args.classes, card["num_classes"]) if args.classes
                 else card.get("classes") or [str(c) for c in range(card["num_classes"])])
    except (CheckpointError, ConversionError, UsageError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {message.splitlines()[0]}", file=sys.stderr)
        return 2
    rows = []
    for path, result in classify(net, framework, card, files, args.top_k, args.batch_size):
        if isinstance(result, Exception):
            print(f"error: {result}", file=sys.stderr)
            failed = True
        else:
            rows.append((path, result))
    if args.json:
        _write(write_json, rows, names, args.json)
    if args.csv:
        _write(write_csv, rows, names, args.csv)
    if not (args.json == "-" or args.csv == "-"):
        write_table(rows, names, sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
