"""Export a checkpoint's model to ONNX (the PyTorch model, with a symbolic batch axis).

    python -m scripts.export CHECKPOINT --onnx OUT [--model NAME] [--num-classes N]
                                        [--force] [--opset N] [--check]

CHECKPOINT is any checkpoint the converter reads (``.params``, ``.pdparams``, ``.pt``/``.pth``,
``.safetensors``); without ``--model`` its tensors must identify exactly one registered
model. OUT is written atomically and an existing one is kept unless ``--force``. ``--check``
runs a random batch of 2 through onnxruntime and torch, prints the largest logit difference
and exits with 3 when it is beyond the float32 parity tolerance (1: any other error).
"""
import argparse
import os
import sys
import time

import numpy as np

import pytorch_impl
from common.checkpoint import CheckpointError
from common.convert import ConversionError
from common.specs import input_size, read_model_card
from parity_tests.tolerances import tolerance_units
from pytorch_impl.export import DEFAULT_OPSET, export_onnx, run_onnx
from pytorch_impl.weights import predict


def load_pytorch_model(path, model=None, **kwargs):
    """The PyTorch model of the checkpoint ``path`` (any format), with its weights, in eval
    mode, and the side of its input images: ``(module, name, kwargs, side)``. The model card
    beside the checkpoint names the model and its input side; without one (or with
    ``model``) the tensors identify the model and its spec gives the side."""
    card = read_model_card(path)
    if model is None:
        model, kwargs = pytorch_impl.resolve_checkpoint(path, **kwargs)
    elif model not in pytorch_impl.list_models():
        raise ConversionError(f"unknown model {model!r}; registered: {', '.join(pytorch_impl.list_models())}")
    net = pytorch_impl.create_model(model, pretrained=path, **kwargs)
    side = card["input_size"] if card is not None and card["model"] == model else input_size(model, **kwargs)
    return net, model, kwargs, side


def check(net, path, size, seed=0, batch=2):
    """``(onnxruntime's logits, torch's logits)`` of one random batch of ``batch`` images."""
    images = np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype(np.float32)
    return run_onnx(path, images), predict(net, images)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="attention-ports-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="the ONNX file to write")
    parser.add_argument("--model", help="registered model name (default: identified from the tensors)")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, choices=range(11, 21), metavar="N",
                        help="ONNX opset, 11 (im2col's first) to 20 (the TorchScript exporter's last); "
                             "default %(default)s")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.add_argument("--check", action="store_true",
                        help="compare onnxruntime's logits with torch's on a random batch of 2; exit "
                             "with 3 beyond the float32 parity tolerance")
    args = parser.parse_args(argv)
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    start = time.perf_counter()
    try:
        if os.path.exists(args.onnx) and not args.force:
            raise ConversionError(f"{args.onnx} exists; pass --force to replace it")
        net, name, kwargs, size = load_pytorch_model(args.checkpoint, args.model, **kwargs)
        export_onnx(net, args.onnx, size, args.opset)
    except (CheckpointError, ConversionError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"wrote {args.onnx}: model {name} {kwargs}, opset {args.opset}, input images "
          f"[batch, 3, {size}, {size}] -> logits [batch, classes], in {time.perf_counter() - start:.2f} s")
    if args.check:
        actual, expected = check(net, args.onnx, size)
        units = tolerance_units(actual, expected, np.float32)
        print(f"check: max |logit difference| {np.abs(actual - expected).max():.3e} (max |logit| "
              f"{np.abs(expected).max():.3e}), {units:.3g} float32 tolerances: onnxruntime and torch "
              f"{'agree' if units <= 1 else 'DISAGREE'}")
        if units > 1:
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
