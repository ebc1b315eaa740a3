"""Benchmark: converting one large checkpoint in every direction, seconds and peak memory
against the file size (target: under 3 s and under 3x the file size).

    scripts/run python -m scripts.bench_convert [--model attention92] [--repeat 3]

Each conversion runs in a fresh process after the frameworks are imported and the model's
shapes are known, so the figures are the conversion's own: wall time of ``convert`` and the
growth of the resident set (the process's peak RSS, VmHWM, minus its RSS just before) over
the source file's size.
"""
import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile

from common.formats import EXTENSION


CHILD = r"""
import json, sys, time
import mxnet, paddle, torch  # noqa: F401  (imports are not part of the conversion)
from scripts.convert import convert, shapes
src, dst, model = sys.argv[1:4]
for fmt in ("pytorch", "gluon", "paddle"):
    if model in __import__(fmt + "_impl").list_models():
        shapes(fmt, model, {})  # warm the registries and model code
def status(field):  # VmRSS now, VmHWM the peak of this process image (ru_maxrss survives exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
before = status("VmRSS")
start = time.perf_counter()
convert(src, dst, model, force=True)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "grown": max(0, status("VmHWM") - before)}))
"""


def make_source(model, folder):
    """A checkpoint of ``model`` with random weights in each format, via the CLI itself."""
    import torch

    from pytorch_impl import create_model
    from scripts.convert import convert
    torch.manual_seed(0)
    net = create_model(model)
    files = {"pytorch": os.path.join(folder, "src.pth")}
    torch.save(net.state_dict(), files["pytorch"])
    del net
    for fmt in ("gluon", "paddle", "safetensors"):
        if fmt == "safetensors" or model in importlib.import_module(f"{fmt}_impl").list_models():
            files[fmt] = os.path.join(folder, f"src{EXTENSION[fmt]}")
            convert(files["pytorch"], files[fmt], model)
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="attention92")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        files = make_source(args.model, folder)
        size = os.path.getsize(files["pytorch"])
        print(f"{args.model}: {size / 2**20:.0f} MiB per checkpoint; median of {args.repeat} fresh processes")
        print(f"{'from':<12}{'to':<12}{'seconds':>9}{'peak growth':>14}{'x file':>8}")
        worst = (0.0, 0.0)
        for src_fmt, src in files.items():
            for dst_fmt in files:
                if dst_fmt == src_fmt:
                    continue
                dst = os.path.join(folder, f"out{EXTENSION[dst_fmt]}")
                runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, src, dst, args.model],
                                                  check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                        for _ in range(args.repeat)]
                seconds = statistics.median(r["seconds"] for r in runs)
                grown = statistics.median(r["grown"] for r in runs)
                worst = (max(worst[0], seconds), max(worst[1], grown / size))
                print(f"{src_fmt:<12}{dst_fmt:<12}{seconds:>9.2f}{grown / 2**20:>11.0f} MiB{grown / size:>8.2f}")
        print(f"worst: {worst[0]:.2f} s, {worst[1]:.2f}x the file size "
              f"({'within' if worst[0] < 3 and worst[1] < 3 else 'OUTSIDE'} the 3 s / 3x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
