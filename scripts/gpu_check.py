"""The GPU check: on a CUDA machine, every train script of every framework runs a few batches
on the GPU in float32 and with ``--amp``; with two GPUs, each framework's multi-process (or
multi-context) launcher runs every script on both; the SAN operators' CUDA tests run. Ends
with one table: the training rate of each run (images/s of its epoch, warm-up included) and,
for the float32 runs, the largest logit difference of the checkpoint it wrote run on the GPU
against the same checkpoint on the CPU (test images of the embedded dataset).

    python -m scripts.gpu_check [--batches 20] [--out runs/gpu-check]
    python -m scripts.gpu_check --list      # the commands, on any machine, without running them

Exit status 1 when a run fails or a logit difference exceeds the float32 parity tolerance
of ``parity_tests/tolerances.py`` (scaled by the logits' magnitude), 0 otherwise; on a machine
without a CUDA device it says so and exits 0 having run nothing.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from common import runs
from common.data import get_dataset
from common.loader import BatchLoader

#: family -> (model, flags of a short run at this batch size)
FAMILIES = {
    "attention": ("attention56_cifar", ("--batch-size", "64")),
    "alexnet": ("alexnet_simam", ("--batch-size", "128")),
    "upanets": ("upanets16", ("--batch-size", "100")),
    "san": ("san10_pairwise", ("--batch-size", "64")),
}
FRAMEWORKS = ("gluon", "paddle", "pytorch")
#: framework -> the flags that put a run on the first GPU, and on the first two
ONE_GPU = {"pytorch": ("--device", "cuda"), "paddle": ("--device", "gpu"), "gluon": ("--ctx", "gpu0")}
TWO_GPUS = {  # framework -> (launcher, flags): each framework's own engine
    "pytorch": ((sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", "2", "-m"), ("--device", "cuda")),
    "paddle": ((sys.executable, "-m", "paddle.distributed.launch", "--devices", "0,1",
                sys.executable, "-m"), ("--device", "gpu")),  # it runs a program, not -m
    "gluon": ((sys.executable, "-m"), ("--ctx", "gpu0,gpu1")),  # the original's split_and_load
}


def runs_to_check(gpus, batches):
    """(label, framework, family, amp, command) of every run, in order."""
    out = []
    for framework in FRAMEWORKS:
        for family, (model, flags) in FAMILIES.items():
            module = f"{framework}_impl.train_{family}"
            base = ("--model", model, "--dataset", "digits", "--epochs", "1",
                    "--max-batches", str(batches), "--workers", "2", *flags)
            for amp in (False, True):
                command = (sys.executable, "-m", module, *base, *ONE_GPU[framework],
                           *(("--amp",) if amp else ()))
                out.append((f"1 GPU{' amp' if amp else ''}", framework, family, amp, command))
            if gpus >= 2:
                launcher, device = TWO_GPUS[framework]
                out.append(("2 GPUs", framework, family, False, (*launcher, module, *base, *device)))
    return out


def gpu_count():
    """CUDA devices visible to PyTorch (each framework then checks its own)."""
    import torch
    return torch.cuda.device_count()


def test_images(size, count=64):
    """The first ``count`` digits test images at ``size`` x ``size`` (upsampled by
    repetition for AlexNet's 128: the check compares two devices, not the recipe)."""
    from common import transforms
    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")
    images = next(iter(BatchLoader(test, count, transforms.plain(train.mean, train.std),
                                   workers=0).epoch(0)))[0]
    times = -(-size // images.shape[-1])
    return np.ascontiguousarray(images.repeat(times, axis=2).repeat(times, axis=3)[..., :size, :size])


def device_logits(framework, model, kwargs, checkpoint, images):
    """(CPU logits, GPU logits) of ``images`` through ``checkpoint``'s weights in ``framework``."""
    from scripts.convert import logits
    cpu = logits(framework, model, kwargs, checkpoint, images)
    if framework == "pytorch":
        import torch
        import pytorch_impl
        net = pytorch_impl.create_model(model, pretrained=checkpoint, **kwargs).cuda().eval()
        with torch.no_grad():
            gpu = net(torch.from_numpy(images).cuda()).cpu().numpy()
    elif framework == "paddle":
        import paddle
        import paddle_impl
        paddle.set_device("gpu")
        net = paddle_impl.create_model(model, pretrained=checkpoint, **kwargs)
        net.eval()
        with paddle.no_grad():
            gpu = net(paddle.to_tensor(images)).numpy()
        paddle.set_device("cpu")
    else:
        import mxnet as mx
        import gluon_impl
        net = gluon_impl.create_model(model, pretrained=checkpoint, **kwargs)
        net.reset_ctx(mx.gpu(0))
        gpu = net(mx.nd.array(images, ctx=mx.gpu(0))).asnumpy()
    return cpu, gpu


def check_run(label, framework, family, amp, command, out):
    """Run one command; returns a table row (label, framework, family, img/s, logit
    difference or None, tolerance units or None, ok)."""
    from common.formats import EXTENSION
    from parity_tests.tolerances import tolerance_units
    run_dir = os.path.join(out, f"{framework}-{family}-{label.replace(' ', '-')}")
    command = (*command, "--log-dir", run_dir, "--overwrite")
    print("$", " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env=runs.child_environment(PYTHONUNBUFFERED="1"))
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", flush=True)
        return (label, framework, family, None, None, None, False, time.perf_counter() - started)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rate = json.loads(f.readlines()[-1])["samples_per_s"]
    diff = units = None
    if label == "1 GPU":
        with open(os.path.join(run_dir, "model.json")) as f:
            card = json.load(f)
        images = test_images(card["input_size"])
        cpu, gpu = device_logits(framework, card["model"], card["kwargs"],
                                 os.path.join(run_dir, f"model-last{EXTENSION[framework]}"), images)
        diff, units = float(np.abs(gpu - cpu).max()), tolerance_units(gpu, cpu, np.float32)
    ok = units is None or units <= 1
    return (label, framework, family, rate, diff, units, ok, time.perf_counter() - started)


def san_cuda_tests():
    """Whether the SAN operators' CUDA tests pass, and pytest's summary line."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_san_ops.py", "-k", "cuda"], capture_output=True, text=True)
    lines = (done.stdout.strip() or done.stderr.strip() or "no output").splitlines()
    return done.returncode == 0, lines[-1]


def table(rows):
    lines = ["| run | framework | family | img/s | max logit diff GPU vs CPU (tolerance units) | ok |",
             "| --- | --- | --- | --- | --- | --- |"]
    for label, framework, family, rate, diff, units, ok, _ in rows:
        lines.append(f"| {label} | {framework} | {family} | "
                     f"{'failed' if rate is None else f'{rate:.1f}'} | "
                     f"{'' if diff is None else f'{diff:.2e} ({units:.2f})'} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=runs.HelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="training batches per run")
    parser.add_argument("--out", default=os.path.join("runs", "gpu-check"), help="run folders")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    if args.list:
        for label, framework, family, _, command in runs_to_check(2, args.batches):
            print(f"{label:10} {' '.join(command[1:])}")
        return 0
    gpus = gpu_count()
    if gpus == 0:
        print("no CUDA device on this machine: the GPU check ran nothing")
        return 0
    rows = [check_run(*run, args.out) for run in runs_to_check(gpus, args.batches)]
    san_ok, san_summary = san_cuda_tests()
    print(table(rows))
    print(f"SAN operator tests on CUDA: {san_summary}")
    return 0 if all(row[6] for row in rows) and san_ok else 1


if __name__ == "__main__":
    sys.exit(main())
