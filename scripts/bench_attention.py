"""Speed of Attention-56 (CIFAR): native Gluon (hybridized) vs the PyTorch and Paddle
ports, on CPU.

    python -m scripts.bench_attention [--batch-size 64] [--iters 15] [--threads 2] [--imperative]

Train step (forward, backward, NAG update of the recipe) and inference (eval forward) in
images/s, float32, batch 64 by default. The runs are interleaved (:mod:`scripts.timing`) so
that load on the machine hits all alike; every framework gets the same thread count
(``set_threads`` of each ``*_impl`` after all the imports, since importing mxnet resets
torch's). Prints medians over ``--iters`` iterations after ``--warmup`` and each port's
ratio to Gluon (> 1: the port is faster), and native Gluon's ratio to the same network (same
weights) with the original code's up-sampling kernel, ``contrib.BilinearResize2D``, where the
native one is a fused operator (``gluon_impl/kernels``; matrix products without a compiler)
(``gluon kernel``). ``--imperative`` runs both Gluon networks
without hybridizing them (the original's train script offers both).
"""
import argparse
import os
import sys

from common.memory import keep_freed_memory
from scripts.timing import interleaved, one_process


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="attention56_cifar")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--memory-format", choices=("channels_last", "contiguous"),
                        default="channels_last", help="PyTorch layout (the train script's)")
    parser.add_argument("--imperative", action="store_true", help="run Gluon without hybridizing")
    args = parser.parse_args(argv)
    if args.iters < 15:
        parser.error("--iters must be at least 15 (medians over fewer say little)")
    return args


def main(argv=None):
    args = parse(argv)
    keep_freed_memory()  # as the train and predict scripts do (common/memory.py)
    one_process(args.threads)
    import mxnet as mx
    import numpy as np
    import paddle
    import torch
    from mxnet import autograd, gluon

    import gluon_impl
    import paddle_impl
    import pytorch_impl
    from gluon_impl.models import attention as gluon_attention
    from paddle_impl.mxnet_optim import MXNetSGD as PaddleMXNetSGD
    from paddle_impl.session import soft_cross_entropy as paddle_loss
    from pytorch_impl.mxnet_optim import MXNetSGD
    for framework in (gluon_impl, paddle_impl, pytorch_impl):  # after every import
        framework.set_threads(args.threads)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size)
    dense = np.eye(10, dtype=np.float32)[y]

    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    gx, gy = mx.nd.array(x), mx.nd.array(dense)

    def kernel_upsampling(block):
        if isinstance(block, gluon_attention.UpSample):
            block.hybrid_forward = lambda F, x, like: F.contrib.BilinearResize2D(x, like, mode="like")

    def gluon_runner(upsample_kernel):
        net = gluon_impl.create_model(args.model, num_classes=10)
        if upsample_kernel:
            net.apply(kernel_upsampling)
        mx.random.seed(0)
        net.initialize(mx.init.MSRAPrelu())
        if not args.imperative:
            net.hybridize(static_alloc=True, static_shape=True)
        trainer = gluon.Trainer(net.collect_params(), "nag",
                                {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4})

        def train():
            with autograd.record():
                loss = loss_fn(net(gx), gy)
            loss.backward()
            trainer.step(args.batch_size)
            mx.nd.waitall()

        def infer():
            net(gx).wait_to_read()
        return train, infer
    gluon_train, gluon_infer = gluon_runner(upsample_kernel=False)
    kernel_train, kernel_infer = gluon_runner(upsample_kernel=True)

    model = pytorch_impl.create_model(args.model, num_classes=10)
    layout = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=layout)
    opt = MXNetSGD(model.parameters(), lr=0.01, momentum=0.9, wd=1e-4, nesterov=True,
                   rescale_grad=1 / args.batch_size)
    tx, ty = torch.from_numpy(x).contiguous(memory_format=layout), torch.from_numpy(dense)

    layer = paddle_impl.create_model(args.model, num_classes=10)
    popt = PaddleMXNetSGD(layer.parameters(), learning_rate=0.01, momentum=0.9, wd=1e-4,
                          nesterov=True, rescale_grad=1 / args.batch_size)
    px, py = paddle.to_tensor(x), paddle.to_tensor(dense)

    def torch_train():
        model.train()
        opt.zero_grad()
        (-(ty * torch.log_softmax(model(tx), 1)).sum()).backward()
        opt.step()

    def torch_infer():
        model.eval()
        with torch.inference_mode():
            model(tx)

    def paddle_train():
        layer.train()
        paddle_loss(layer(px), py, reduction="sum").backward()
        popt.step()
        popt.clear_grad()
        float(layer.parameters()[0].sum())  # the step is done

    def paddle_infer():
        layer.eval()
        with paddle.no_grad():
            layer(px).numpy()

    print(f"{args.model}, batch {args.batch_size}, float32, CPU, {args.threads} threads "
          f"(torch {torch.get_num_threads()}, {args.memory_format}; gluon "
          f"{'imperative' if args.imperative else 'hybridized'}), medians of {args.iters} "
          "interleaved iterations")
    for what, cases in (("train step", {"gluon": gluon_train, "pytorch": torch_train, "paddle": paddle_train,
                                        "gluon kernel": kernel_train}),
                        ("inference", {"gluon": gluon_infer, "pytorch": torch_infer, "paddle": paddle_infer,
                                       "gluon kernel": kernel_infer})):
        rate = {k: args.batch_size / t for k, t in interleaved(cases, args.iters, args.warmup).items()}
        print(f"{what:10s}  " + "   ".join(f"{k} {v:8.1f} img/s" for k, v in rate.items()) +
              "   " + "  ".join(f"{k}/gluon {rate[k] / rate['gluon']:5.2f}" for k in ("pytorch", "paddle")) +
              f"  gluon/gluon kernel {rate['gluon'] / rate['gluon kernel']:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
