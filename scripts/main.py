"""The suite's main job: for each model family, the native train script trains briefly on the
embedded dataset, its checkpoint is converted to the other frameworks with the conversion
CLI, and every port runs the test images; the PyTorch model is exported to ONNX and run in
onnxruntime, and the predict command classifies a few test images written as PNG files. Ends
with one table and exits non-zero if any port or the ONNX file disagrees with the native
model (a different prediction, or logits outside the float32 parity tolerance), or if the
predict command's top-1 classes differ from the native model's.

    scripts/run main [--dataset digits] [--only NAME ...] [--out runs/main]
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from common import alexnet_recipe, attention_recipe, runs, transforms
from common.data import get_dataset
from common.san_recipe import SMALL_IMAGE_KERNELS
from common.loader import BatchLoader
from common.checkpoint import CheckpointError
from common.convert import ConversionError
from common.formats import EXTENSION
from scripts.convert import convert, logits


@dataclass
class Job:
    model: str
    native: str
    train_module: str
    ports: tuple
    train_args: tuple = ()
    test_transform: object = transforms.plain  # (mean, std) -> the recipe's test transform
    model_kwargs: dict = field(default_factory=dict)  # what the train script builds at this size


SUITE = (  # each family's native recipe, shortened to two epochs of the embedded dataset
    Job("attention56_cifar", "gluon", "gluon_impl.train_attention", ("pytorch", "paddle"),
        ("--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--warmup-epochs", "1"),
        test_transform=attention_recipe.recipe_transforms()[1]),
    Job("alexnet_simam", "paddle", "paddle_impl.train_alexnet", ("pytorch", "gluon"),
        ("--epochs", "2", "--batch-size", "32"), test_transform=alexnet_recipe.recipe_transforms()[1]),
    Job("upanets16", "pytorch", "pytorch_impl.train_upanets", ("paddle", "gluon"),
        ("--epochs", "2", "--batch-size", "32")),
    Job("san10_pairwise", "pytorch", "pytorch_impl.train_san", ("paddle", "gluon"),  # lr 0.1
        ("--epochs", "2", "--batch-size", "32", "--lr", "0.0125"),  # at batch 256, scaled to 32
        model_kwargs={"kernels": SMALL_IMAGE_KERNELS}),
)


@dataclass
class Row:
    model: str
    native: str
    native_acc: float
    port_acc: dict
    differ: int
    max_diff: float
    onnx_diff: float
    seconds: float
    ok: bool


def available(job):
    return importlib.util.find_spec(job.train_module) is not None


def train(job, args, run_dir):
    """Run the native train script as a subprocess, streaming its output; the run of an
    earlier main job in ``run_dir`` is moved aside (``--overwrite``), never replaced."""
    command = [sys.executable, "-m", job.train_module, "--model", job.model, "--dataset", args.dataset,
               "--seed", "0", "--log-dir", run_dir, "--overwrite", *job.train_args]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    print(f"  $ {' '.join(command[1:])}", flush=True)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=runs.child_environment(PYTHONUNBUFFERED="1")) as process:
        for line in process.stdout:
            if "Warning" not in line and "warnings.warn" not in line:
                print(f"    {line.rstrip()}", flush=True)
    if process.returncode != 0:
        raise RuntimeError(f"{job.train_module} failed with exit code {process.returncode}")
    return os.path.join(run_dir, f"model-last{EXTENSION[job.native]}")


def test_images(args, test_transform):
    train_set = get_dataset(args.dataset, "train", args.data_dir)
    test_set = get_dataset(args.dataset, "test", args.data_dir)
    transform = test_transform(train_set.mean, train_set.std)
    images = np.concatenate([x for x, _ in BatchLoader(test_set, 128, transform, workers=0).epoch(0)])
    return images, test_set.labels, test_set.num_classes


def onnx_logits(model, kwargs, checkpoint, images, run_dir):
    """Export the PyTorch model of ``checkpoint`` to ONNX in ``run_dir`` and run ``images``
    through the file with onnxruntime."""
    import pytorch_impl
    from pytorch_impl.export import export_onnx, run_onnx
    path = os.path.join(run_dir, "model.onnx")
    export_onnx(pytorch_impl.create_model(model, pretrained=checkpoint, **kwargs), path, images.shape[-1])
    return np.concatenate([run_onnx(path, images[i:i + 64]) for i in range(0, len(images), 64)])


def predict_images(args, checkpoint, framework, native_logits, run_dir, count=4):
    """Classify the first ``count`` test images, written as PNG files, with the predict
    command; returns how many of its top-1 classes equal the native model's."""
    from PIL import Image
    from scripts import predict
    folder = os.path.join(run_dir, "predict-images")
    os.makedirs(folder, exist_ok=True)
    test_set = get_dataset(args.dataset, "test", args.data_dir)
    for i in range(count):
        Image.fromarray(np.asarray(test_set.images[i])).save(os.path.join(folder, f"{i}.png"))
    out = os.path.join(run_dir, "predict.json")
    if predict.main([checkpoint, folder, "--framework", framework, "-k", "1", "--json", out]) != 0:
        raise RuntimeError("the predict command failed")
    with open(out) as f:
        top1 = [row["top"][0]["index"] for row in json.load(f)]
    return int((np.array(top1) == native_logits[:count].argmax(1)).sum())


def run_job(job, args):
    from parity_tests.tolerances import assert_close
    start = time.perf_counter()
    run_dir = os.path.join(args.out, job.model)
    native_file = train(job, args, run_dir)
    images, labels, num_classes = test_images(args, job.test_transform)
    kwargs = dict(job.model_kwargs, num_classes=num_classes)
    native_logits = None
    port_acc, differ, max_diff, ok = {}, 0, 0.0, True
    for framework in (job.native, *job.ports):
        if framework == job.native:
            checkpoint = native_file
        else:
            checkpoint = os.path.join(run_dir, f"converted{EXTENSION[framework]}")
            summary = convert(native_file, checkpoint, job.model, force=True, kwargs=kwargs)
            print(f"  converted to {framework}: {summary.tensors} tensors, "
                  f"{len(summary.report.renamed)} renamed, {len(summary.report.transposed)} transposed")
        out = logits(framework, job.model, kwargs, checkpoint, images)
        accuracy = float((out.argmax(1) == labels).mean())
        if framework == job.native:
            native_logits, native_acc = out, accuracy
            continue
        port_acc[framework] = accuracy
        differ += int((out.argmax(1) != native_logits.argmax(1)).sum())
        max_diff = max(max_diff, float(np.abs(out - native_logits).max()))
        try:
            assert_close(out, native_logits, np.float32, f"{job.model} {framework} logits")
        except AssertionError as e:
            print(f"  DISAGREES: {e}")
            ok = False
    torch_checkpoint = native_file if job.native == "pytorch" else os.path.join(run_dir, "converted.pth")
    exported = onnx_logits(job.model, kwargs, torch_checkpoint, images, run_dir)
    onnx_diff = float(np.abs(exported - native_logits).max())
    differ += int((exported.argmax(1) != native_logits.argmax(1)).sum())
    try:
        assert_close(exported, native_logits, np.float32, f"{job.model} onnxruntime logits")
    except AssertionError as e:
        print(f"  DISAGREES: {e}")
        ok = False
    agree = predict_images(args, native_file, job.native, native_logits, run_dir)
    print(f"  exported to ONNX: max |logit difference| to {job.native} {onnx_diff:.2e}; "
          f"predict command: {agree} of 4 test images top-1 as the native model", flush=True)
    return Row(job.model, job.native, native_acc, port_acc, differ, max_diff, onnx_diff,
               time.perf_counter() - start, ok and differ == 0 and agree == 4)


def table(rows):
    header = ("model", "native", "native acc", "port acc", "differ", "max |dlogit|", "onnx |dlogit|",
              "time", "")
    lines = [header] + [(r.model, r.native, f"{r.native_acc:.4f}",
                         ", ".join(f"{fw} {acc:.4f}" for fw, acc in r.port_acc.items()),
                         str(r.differ), f"{r.max_diff:.2e}", f"{r.onnx_diff:.2e}", f"{r.seconds:.0f} s",
                         "ok" if r.ok else ("FAILED" if r.native_acc != r.native_acc else "DISAGREES"))
                        for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--only", nargs="*", help="model names to run (default: the whole suite)")
    parser.add_argument("--out", default=os.path.join("runs", "main"))
    args = parser.parse_args(argv)
    jobs = [j for j in SUITE if not args.only or j.model in args.only]
    missing = [j.model for j in jobs if not available(j)]
    if missing:
        print(f"not in this checkout yet (skipped): {', '.join(missing)}")
    rows = []
    for i, job in enumerate(j for j in jobs if available(j)):
        print(f"[{i + 1}/{len(jobs) - len(missing)}] {job.model}: train natively in {job.native}, "
              f"convert to {', '.join(job.ports)}, compare on the test images", flush=True)
        try:
            rows.append(run_job(job, args))
        except (RuntimeError, ValueError, CheckpointError, ConversionError) as e:
            print(f"  FAILED: {e}", flush=True)
            rows.append(Row(job.model, job.native, float("nan"), {}, 0, float("nan"), float("nan"), 0.0, False))
    print()
    print(table(rows) if rows else "no model ran")
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
