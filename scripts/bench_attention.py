"""Speed of Attention-56 (CIFAR): native Gluon (hybridized) vs the PyTorch port, on CPU.

    python -m scripts.bench_attention [--batch-size 64] [--iters 15] [--threads 2]

Train step (forward, backward, NAG update of the recipe) and inference (eval forward) in
images/s, float32, batch 64 by default. The runs are interleaved (one Gluon iteration, one
PyTorch iteration, ...) so that load on the machine hits both alike; both frameworks get the
same thread count (``OMP_NUM_THREADS`` before the imports, ``torch.set_num_threads`` after
them, since importing mxnet resets torch's). Prints medians over ``--iters`` iterations after
``--warmup`` and the ratio PyTorch / Gluon (> 1: the port is faster).
"""
import argparse
import os
import statistics
import sys
import time


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="attention56_cifar")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--memory-format", choices=("channels_last", "contiguous"),
                        default="channels_last", help="PyTorch layout (the train script's)")
    args = parser.parse_args(argv)
    if args.iters < 15:
        parser.error("--iters must be at least 15 (medians over fewer say little)")
    return args


def main(argv=None):
    args = parse(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import mxnet as mx
    import numpy as np
    import torch
    from mxnet import autograd, gluon

    from gluon_impl import create_model as create_gluon
    from pytorch_impl import create_model as create_torch
    from pytorch_impl.mxnet_optim import MXNetSGD
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size)
    dense = np.eye(10, dtype=np.float32)[y]

    net = create_gluon(args.model, num_classes=10)
    net.initialize(mx.init.MSRAPrelu())
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), "nag", {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    gx, gy = mx.nd.array(x), mx.nd.array(dense)

    model = create_torch(args.model, num_classes=10)
    layout = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=layout)
    opt = MXNetSGD(model.parameters(), lr=0.01, momentum=0.9, wd=1e-4, nesterov=True,
                   rescale_grad=1 / args.batch_size)
    tx, ty = torch.from_numpy(x).contiguous(memory_format=layout), torch.from_numpy(dense)

    def gluon_train():
        with autograd.record():
            loss = loss_fn(net(gx), gy)
        loss.backward()
        trainer.step(args.batch_size)
        mx.nd.waitall()

    def gluon_infer():
        net(gx).wait_to_read()

    def torch_train():
        model.train()
        opt.zero_grad()
        (-(ty * torch.log_softmax(model(tx), 1)).sum()).backward()
        opt.step()

    def torch_infer():
        model.eval()
        with torch.inference_mode():
            model(tx)

    print(f"{args.model}, batch {args.batch_size}, float32, CPU, {args.threads} threads "
          f"(torch {torch.get_num_threads()}, {args.memory_format}), medians of {args.iters} "
          "interleaved iterations")
    for what, pair in (("train step", (gluon_train, torch_train)), ("inference", (gluon_infer, torch_infer))):
        times = ([], [])
        for i in range(args.warmup + args.iters):
            for fn, out in zip(pair, times):
                tic = time.perf_counter()
                fn()
                if i >= args.warmup:
                    out.append(time.perf_counter() - tic)
        g, t = (args.batch_size / statistics.median(ts) for ts in times)
        print(f"{what:10s}  gluon {g:8.1f} img/s   pytorch {t:8.1f} img/s   pytorch/gluon {t / g:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
