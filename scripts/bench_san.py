"""Speed and memory of SAN on the CPU (or a GPU with --device cuda).

1. Operators: ``pytorch_impl.san_ops`` (aggregation, subtraction2) against the plain
   unfold-based formulation, forward + backward at a SAN stage's shape (default batch 8,
   256 channels, 28x28, kernel 7, reflection padding): median time and peak memory, each
   measured in a fresh subprocess (growth of the resident set, sampled every 0.5 ms, on the
   CPU; ``max_memory_allocated`` on a GPU).
2. Models: SAN10 pairwise and patchwise inference images/s at 224x224, batch 8, PyTorch,
   Paddle and Gluon (hybridized) side by side; and, as the measure of each framework's own
   convolution cost, the same network's convolution layers alone, each on the input it had
   in the model, in PyTorch and Paddle. Paddle's ratio to PyTorch on the convolutions alone
   over its ratio on the whole network is what SAN's operators and the other layers cost
   Paddle beyond its convolutions (1.00: as much more than PyTorch as its convolutions).

Compared runs are interleaved, thread counts set after all imports, and medians taken over
``--iters`` iterations (15 or more).

    python -m scripts.bench_san [--iters 15] [--threads 2] [--skip-models]
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from common.memory import keep_freed_memory
from scripts.timing import interleaved, one_process

OPS = ("aggregation", "subtraction2")


def _unfold_ops():
    import torch.nn.functional as F

    from pytorch_impl.san_ops import pad

    def aggregation(x, w, k, padding):
        n, c, h, wd = x.shape
        patches = F.unfold(pad(x, padding, 1), k).view(n, c // w.shape[1], w.shape[1], k * k, h * wd)
        return (w.unsqueeze(1) * patches).sum(-2).view(n, c, h, wd)

    def subtraction2(x1, x2, k, padding):
        n, c, h, wd = x1.shape
        return x1.view(n, c, 1, h * wd) - F.unfold(pad(x2, padding, 1), k).view(n, c, k * k, h * wd)

    return aggregation, subtraction2


def _op_inputs(op, args, device):
    import torch
    g = torch.Generator().manual_seed(0)
    n, c, s, k = args.batch, args.channels, args.size, args.kernel
    if op == "aggregation":
        shapes = [(n, c, s, s), (n, c // 8, k * k, s * s)]  # share_planes 8
    else:
        shapes = [(n, c // 16, s, s)] * 2  # rel_planes = planes / 16
    return [torch.randn(*shape, generator=g).to(device).requires_grad_() for shape in shapes]


def op_step(op, impl, args):
    """A callable running forward + backward once."""
    import torch

    from pytorch_impl import san_ops
    unfold_agg, unfold_sub2 = _unfold_ops()
    k, padding = args.kernel, args.kernel // 2
    fn = {("aggregation", "ours"): lambda a, b: san_ops.aggregation(a, b, k, 1, padding, 1, 1),
          ("subtraction2", "ours"): lambda a, b: san_ops.subtraction2(a, b, k, 1, padding, 1, 1),
          ("aggregation", "unfold"): lambda a, b: unfold_agg(a, b, k, padding),
          ("subtraction2", "unfold"): lambda a, b: unfold_sub2(a, b, k, padding)}[op, impl]
    inputs = _op_inputs(op, args, args.device)

    def step():
        out = fn(*inputs)
        out.backward(torch.ones_like(out))
        for t in inputs:
            t.grad = None
    return step


def peak_memory_child(op, impl, args):
    """Run in a subprocess: peak memory growth (MiB) of one forward + backward."""
    import torch
    torch.set_num_threads(args.threads)
    step = op_step(op, impl, args)
    if args.device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    return _peak_rss_growth(step) / 2 ** 20


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_rss_growth(fn):
    """Peak resident memory above the level before ``fn``, sampled every 0.5 ms."""
    import threading
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)
    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak[0], _rss()) - base


def bench_ops(args):
    import torch
    torch.set_num_threads(args.threads)
    print(f"operators, forward + backward, batch {args.batch}, {args.channels} channels, "
          f"{args.size}x{args.size}, kernel {args.kernel}, reflection padding, {args.device}, "
          f"{args.threads} threads")
    for op in OPS:
        steps = {impl: op_step(op, impl, args) for impl in ("ours", "unfold")}
        times = {impl: [] for impl in steps}
        for impl, step in steps.items():  # warm-up
            step()
        for _ in range(args.iters):
            for impl, step in steps.items():  # interleaved
                if args.device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                step()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                times[impl].append(time.perf_counter() - start)
        memory = {}
        for impl in steps:
            out = subprocess.run([sys.executable, "-m", "scripts.bench_san", "--memory-child",
                                  json.dumps([op, impl, vars(args)])],
                                 capture_output=True, text=True, check=True)
            memory[impl] = float(out.stdout.strip().splitlines()[-1])
        t = {impl: statistics.median(v) * 1e3 for impl, v in times.items()}
        print(f"  {op:13s} ours {t['ours']:8.1f} ms {memory['ours']:8.1f} MiB | unfold "
              f"{t['unfold']:8.1f} ms {memory['unfold']:8.1f} MiB | unfold/ours: time "
              f"{t['unfold'] / t['ours']:.2f}x, memory {memory['unfold'] / max(memory['ours'], 1e-9):.2f}x")


def convolutions_alone(layers, register, run):
    """A callable running each of ``layers`` (a model's convolutions) on the input it had
    when ``run()`` ran the model; ``register(layer, hook)`` adds a forward hook
    ``hook(layer, inputs, output)`` and returns its handle."""
    calls = []
    handles = [register(layer, lambda layer, inputs, output: calls.append((layer, inputs[0])))
               for layer in layers]
    run()
    for handle in handles:
        handle.remove()

    def convolutions():
        for layer, x in calls:
            out = layer(x)
        return out
    return convolutions


def bench_models(args):
    import mxnet as mx
    import numpy as np
    import paddle
    import torch
    from mxnet import autograd

    import gluon_impl
    import paddle_impl
    import pytorch_impl
    for framework in (gluon_impl, paddle_impl, pytorch_impl):  # after every import
        framework.set_threads(args.threads)
    paddle.set_device("cpu")
    x = np.random.default_rng(0).standard_normal((args.model_batch, 3, 224, 224)).astype(np.float32)
    print(f"models, inference, batch {args.model_batch}, 224x224, cpu, {args.threads} threads")
    for name in ("san10_pairwise", "san10_patchwise"):
        t_model, p_model = pytorch_impl.create_model(name).eval(), paddle_impl.create_model(name)
        p_model.eval()
        g_model = gluon_impl.create_model(name)
        g_model.initialize()
        g_model.hybridize()
        tx, px, gx = torch.from_numpy(x), paddle.to_tensor(x), mx.nd.array(x)

        def run_torch():
            with torch.no_grad():
                t_model(tx)

        def run_paddle():
            with paddle.no_grad():
                p_model(px).numpy()

        def run_gluon():
            with autograd.predict_mode():
                g_model(gx).asnumpy()
        t_convs = convolutions_alone([m for m in t_model.modules() if isinstance(m, torch.nn.Conv2d)],
                                     torch.nn.Module.register_forward_hook, run_torch)
        p_convs = convolutions_alone([m for m in p_model.sublayers() if isinstance(m, paddle.nn.Conv2D)],
                                     paddle.nn.Layer.register_forward_post_hook, run_paddle)

        def torch_convs():
            with torch.no_grad():
                t_convs()

        def paddle_convs():
            with paddle.no_grad():
                p_convs().numpy()
        seconds = interleaved({"pytorch": run_torch, "paddle": run_paddle, "gluon": run_gluon,
                               "pytorch convolutions": torch_convs, "paddle convolutions": paddle_convs},
                              args.iters, warmup=1)
        speed = {k: args.model_batch / v for k, v in seconds.items()}
        ratio = {k: speed[k] / speed["pytorch"] for k in ("paddle", "gluon")}
        convs = speed["paddle convolutions"] / speed["pytorch convolutions"]
        print(f"  {name:16s} " + " | ".join(f"{k} {speed[k]:7.2f} img/s" for k in ("pytorch", "paddle", "gluon")) +
              " | " + ", ".join(f"{k}/pytorch {v:.2f}x" for k, v in ratio.items()))
        print(f"  {'':16s} convolutions alone: pytorch {seconds['pytorch convolutions'] * 1e3:.1f} ms, "
              f"paddle {seconds['paddle convolutions'] * 1e3:.1f} ms, paddle/pytorch {convs:.2f}x; "
              f"paddle beyond its convolutions: {convs / ratio['paddle']:.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--model-batch", type=int, default=8)
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-ops", action="store_true")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        op, impl, child_args = json.loads(args.memory_child)
        print(peak_memory_child(op, impl, argparse.Namespace(**child_args)))
        return
    keep_freed_memory()  # as the train and predict scripts do (common/memory.py)
    one_process(args.threads)
    if args.iters < 15:
        parser.error("--iters must be at least 15 (medians over 15+ runs)")
    if not args.skip_ops:
        bench_ops(args)
    if not args.skip_models:
        bench_models(args)


if __name__ == "__main__":
    main()
