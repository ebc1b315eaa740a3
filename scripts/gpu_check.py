"""The GPU check: on a CUDA machine, every train script of every framework runs a few batches
on the GPU in float32 and with ``--amp`` (PyTorch's also with ``--compile``); with two GPUs,
each framework's multi-process (or multi-context) launcher runs every script on both; the
SAN operators' CUDA tests run. Ends with one table: the training rate of each run (images/s
of its epoch, warm-up included) and, for the float32 runs (compiled or not), how the
checkpoint it wrote computes on the GPU: the logits of test images of the embedded dataset
on the GPU and on the CPU in float32, each against the same checkpoint's float64 logits on
the CPU, in float32 tolerances (``parity_tests/tolerances.py``).

    python -m scripts.gpu_check [--batches 20] [--out runs/gpu-check] [--frameworks pytorch]
    python -m scripts.gpu_check --list      # the commands, on any machine, without running them

A whole network's float32 result is itself a few tolerances off its float64 one, so the GPU
is held to the policy of ports (``assert_float32_roundoff``): within ``ROUNDOFF_FACTOR``
times the CPU's own float32 error. PyTorch computes these logits with TF32 off (cuDNN
convolutions use it by default, about 1e-3 relative, measured 7e-4 on UPANets16's logits):
the check compares float32 arithmetic, not TF32's. Exit status 1 when a run fails or the
GPU's error exceeds that, 0 otherwise; on a machine without a CUDA device it says so and
exits 0 having run nothing.
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


def runs_to_check(gpus, batches, frameworks=FRAMEWORKS):
    """(label, framework, family, amp, command) of every run, in order."""
    out = []
    for framework in frameworks:
        for family, (model, flags) in FAMILIES.items():
            module = f"{framework}_impl.train_{family}"
            base = ("--model", model, "--dataset", "digits", "--epochs", "1",
                    "--max-batches", str(batches), "--workers", "2", *flags)
            variants = [("1 GPU", ()), ("1 GPU amp", ("--amp",))]
            if framework == "pytorch":
                variants.append(("1 GPU compile", ("--compile",)))
            for label, extra in variants:
                command = (sys.executable, "-m", module, *base, *ONE_GPU[framework], *extra)
                out.append((label, framework, family, "--amp" in extra, command))
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


def cpu_logits(framework, model, kwargs, checkpoint, images):
    """(float32, float64) logits of ``images`` through ``checkpoint``'s weights in
    ``framework`` on the CPU."""
    from scripts.convert import logits
    return [logits(framework, model, kwargs, checkpoint, images, dtype=dtype)
            for dtype in ("float32", "float64")]


def gpu_logits(framework, model, kwargs, checkpoint, images):
    """float32 logits of ``images`` through ``checkpoint``'s weights on the first GPU."""
    if framework == "pytorch":
        import torch
        import pytorch_impl
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        net = pytorch_impl.create_model(model, pretrained=checkpoint, **kwargs).cuda().eval()
        with torch.no_grad():
            return net(torch.from_numpy(images).cuda()).cpu().numpy()
    if framework == "paddle":
        import paddle
        import paddle_impl
        paddle.set_device("gpu")
        net = paddle_impl.create_model(model, pretrained=checkpoint, **kwargs)
        net.eval()
        with paddle.no_grad():
            gpu = net(paddle.to_tensor(images)).numpy()
        paddle.set_device("cpu")
        return gpu
    import mxnet as mx
    import gluon_impl
    net = gluon_impl.create_model(model, pretrained=checkpoint, **kwargs)
    net.reset_ctx(mx.gpu(0))
    return net(mx.nd.array(images, ctx=mx.gpu(0))).asnumpy()


def compare(gpu, cpu32, cpu64):
    """(max |GPU - CPU| float32 logit difference, GPU's and CPU's float32 error against the
    CPU's float64 logits in float32 tolerances, whether the GPU is within the policy of
    ports, ``float32_roundoff``)."""
    from parity_tests.tolerances import float32_roundoff
    gpu_units, cpu_units, allowed = float32_roundoff(gpu, cpu32, cpu64)
    return float(np.abs(gpu - cpu32).max()), gpu_units, cpu_units, gpu_units <= allowed


def check_run(label, framework, family, amp, command, out):
    """Run one command; returns a table row (label, framework, family, img/s, the
    comparison of :func:`compare` or None, ok, seconds)."""
    from common.formats import EXTENSION
    run_dir = os.path.join(out, f"{framework}-{family}-{label.replace(' ', '-')}")
    command = (*command, "--log-dir", run_dir, "--overwrite")
    print("$", " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env=runs.child_environment(PYTHONUNBUFFERED="1"))
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", flush=True)
        return (label, framework, family, None, None, False, time.perf_counter() - started)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rate = json.loads(f.readlines()[-1])["samples_per_s"]
    comparison = None
    if label in ("1 GPU", "1 GPU compile"):
        with open(os.path.join(run_dir, "model.json")) as f:
            card = json.load(f)
        images = test_images(card["input_size"])
        weights = (framework, card["model"], card["kwargs"],
                   os.path.join(run_dir, f"model-last{EXTENSION[framework]}"), images)
        comparison = compare(gpu_logits(*weights), *cpu_logits(*weights))
    ok = comparison is None or comparison[-1]
    return (label, framework, family, rate, comparison, ok, time.perf_counter() - started)


def san_cuda_tests():
    """Whether the SAN operators' CUDA tests pass, and pytest's summary line."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_san_ops.py", "-k", "cuda"], capture_output=True, text=True)
    lines = (done.stdout.strip() or done.stderr.strip() or "no output").splitlines()
    return done.returncode == 0, lines[-1]


def table(rows):
    lines = ["| run | framework | family | img/s | max logit diff GPU vs CPU | float32 error vs "
             "float64, GPU / CPU (tolerances) | ok |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, framework, family, rate, comparison, ok, _ in rows:
        diff, units = "", ""
        if comparison is not None:
            diff, units = f"{comparison[0]:.2e}", f"{comparison[1]:.2f} / {comparison[2]:.2f}"
        lines.append(f"| {label} | {framework} | {family} | "
                     f"{'failed' if rate is None else f'{rate:.1f}'} | {diff} | {units} | "
                     f"{'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=runs.HelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="training batches per run")
    parser.add_argument("--out", default=os.path.join("runs", "gpu-check"), help="run folders")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS),
                        help="the frameworks whose scripts run (a machine may hold only some)")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    if args.list:
        for label, framework, family, _, command in runs_to_check(2, args.batches, args.frameworks):
            print(f"{label:13} {' '.join(command[1:])}")
        return 0
    gpus = gpu_count()
    if gpus == 0:
        print("no CUDA device on this machine: the GPU check ran nothing")
        return 0
    rows = []
    for run in runs_to_check(gpus, args.batches, args.frameworks):
        rows.append(check_run(*run, args.out))
        print(table(rows[-1:]).splitlines()[-1], flush=True)  # each row as it comes
    san_ok, san_summary = san_cuda_tests()
    print(table(rows))
    print(f"SAN operator tests on CUDA: {san_summary}")
    return 0 if all(row[5] for row in rows) and san_ok else 1


if __name__ == "__main__":
    sys.exit(main())
