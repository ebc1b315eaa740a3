"""Predict speed of one model in every framework it exists in and in onnxruntime, side by
side in one process.

    python -m scripts.bench_predict --model upanets16 --batch 32 --threads 2 --iters 15

The model (random weights, saved once as ``.pth``) is built in each framework by the predict
command's ``load`` (Gluon hybridized; ``gluon imperative``: the same model not hybridized)
and exported to ONNX (``pytorch_impl.export``). Each case classifies the same batch of
preprocessed images (the transform is numpy, the same for all) and returns numpy logits, so
every asynchronous step is closed before the clock stops. Cases run interleaved
(:mod:`scripts.timing`); prints images/s as medians over ``--iters`` iterations and the ratio
to PyTorch. Thread counts: ``OMP_NUM_THREADS`` before the frameworks are imported (Paddle and
MXNet read it then; :func:`scripts.timing.one_process`), torch's and onnxruntime's explicitly
after every import.
"""
import argparse
import importlib
import os
import sys
import tempfile

from common.memory import keep_freed_memory
from scripts.timing import interleaved, one_process


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="upanets16")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--iters", type=int, default=15, help="timed iterations per case (15+)")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if min(args.batch, args.threads, args.iters) < 1 or args.warmup < 0:
        parser.error("--batch, --threads and --iters must be at least 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    keep_freed_memory()  # as the train and predict scripts do (common/memory.py)
    one_process(args.threads)
    import mxnet as mx  # noqa: F401  (imported before torch's thread count is set)
    import numpy as np
    import onnxruntime
    import paddle
    import torch

    from common.specs import input_size
    from pytorch_impl.export import INPUT_NAME, OUTPUT_NAME, export_onnx
    from scripts.predict import load

    torch.set_num_threads(args.threads)  # after every import: importing mxnet drops it to one
    paddle.base.core.set_num_threads(args.threads)
    size = input_size(args.model)
    images = np.random.default_rng(0).standard_normal((args.batch, 3, size, size)).astype(np.float32)
    cases = {}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, onnx_file = os.path.join(folder, "m.pth"), os.path.join(folder, "m.onnx")
        torch.manual_seed(0)
        net = importlib.import_module("pytorch_impl").create_model(args.model).eval()
        torch.save(net.state_dict(), checkpoint)
        export_onnx(net, onnx_file, size)
        for framework in ("pytorch", "paddle", "gluon"):
            impl = importlib.import_module(f"{framework}_impl")
            if args.model not in impl.list_models():
                continue
            model = load(checkpoint, framework, args.model)[0]
            predict = importlib.import_module(f"{framework}_impl.weights").predict
            cases[framework] = lambda model=model, predict=predict: predict(model, images)
            if framework == "gluon":
                imperative = impl.create_model(args.model, pretrained=checkpoint)
                cases["gluon imperative"] = lambda m=imperative, predict=predict: predict(m, images)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = onnxruntime.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        cases["onnxruntime"] = lambda: session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
        seconds = interleaved(cases, args.iters, args.warmup)
    print(f"{args.model}, batch {args.batch}, {size}x{size}, CPU, {args.threads} threads "
          f"(torch {torch.get_num_threads()}), median of {args.iters} iterations")
    base = args.batch / seconds["pytorch"]
    for name, s in seconds.items():
        speed = args.batch / s
        print(f"  {name:18s} {speed:9.1f} img/s  x{speed / base:.2f} of PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
