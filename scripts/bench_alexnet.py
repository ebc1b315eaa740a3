"""CPU speed of AlexNet and AlexNet-SimAM: the native Paddle models against their PyTorch
and (hybridized) Gluon ports, in one process, interleaved (every iteration times each case
once, in a rotating order, every Gluon case closed by ``mx.nd.waitall()``), with explicit
thread counts in every framework.

    python -m scripts.bench_alexnet --threads 2 --iters 15

Prints, per framework and model, train-step images/s (the train scripts' own step: Adam,
label-smoothing loss, dropout on) and inference images/s (eval, no gradients), as medians
over ``--iters`` timed iterations; then the port/native ratios and the cost of SimAM over
plain AlexNet in each framework. ``--compile`` adds the PyTorch port run through
torch.compile (``pytorch compiled``; its warm-up iterations compile).
"""
import argparse
import os

from common.memory import keep_freed_memory
from scripts.timing import interleaved, one_process


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--iters", type=int, default=15, help="timed iterations per case (15+)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--compile", action="store_true",
                        help="also time the PyTorch port through torch.compile")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.iters < 1 or args.batch_size < 1 or args.warmup < 0:
        parser.error("--threads, --iters and --batch-size must be at least 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    keep_freed_memory()  # as the train and predict scripts do (common/memory.py)
    one_process(args.threads)
    import mxnet as mx
    import numpy as np
    import paddle
    import torch
    from mxnet import autograd

    import gluon_impl
    import paddle_impl
    import pytorch_impl
    from common.formats import convert_state
    from common.labels import smooth_uniform
    from gluon_impl import train_alexnet as gluon_recipe
    from gluon_impl.session import train_step as gluon_train_step
    from gluon_impl.weights import load_weights as load_gluon
    from paddle_impl import train_alexnet as paddle_recipe
    from paddle_impl.session import train_step as paddle_train_step
    from pytorch_impl import train_alexnet as torch_recipe
    from pytorch_impl.session import compiled
    from pytorch_impl.session import train_step as torch_train_step
    from scripts.convert import shapes

    for framework in (gluon_impl, paddle_impl, pytorch_impl):  # after every import
        framework.set_threads(args.threads)

    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch_size, 3, 128, 128)).astype(np.float32)
    targets = smooth_uniform(rng.integers(0, 10, args.batch_size), 10, 0.1)
    train, infer = {}, {}
    for name in ("alexnet", "alexnet_simam"):
        native = paddle_impl.create_model(name)
        ported = pytorch_impl.create_model(name)
        weights = {k: v.numpy() for k, v in native.state_dict().items()}
        state = convert_state(weights, "paddle", "pytorch")
        ported.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        gluon = load_gluon(gluon_impl.create_model(name),
                           convert_state(weights, "paddle", "gluon", shapes("gluon", name, {})))
        gluon.hybridize(static_alloc=True)  # as gluon_impl.session.Placement does
        native_opt = paddle_recipe.make_optimizer(native, 5e-4, 1e-5)
        ported_opt = torch_recipe.make_optimizer(ported, 5e-4, 1e-5)
        gluon_opt = gluon_recipe.make_optimizer(gluon, 5e-4, 1e-5)
        px, pt = paddle.to_tensor(images), paddle.to_tensor(targets)
        tx, tt = torch.from_numpy(images), torch.from_numpy(targets)
        gx, gt = mx.nd.array(images), mx.nd.array(targets)

        def paddle_train(m=native, o=native_opt, x=px, t=pt):
            m.train()
            paddle_train_step(m, o, x, t, 1e-6)

        def torch_train(m=ported, o=ported_opt, x=tx, t=tt):
            m.train()
            torch_train_step(m, o, x, t, 1e-6)

        def gluon_train(m=gluon, o=gluon_opt, x=gx, t=gt):
            gluon_train_step(m, o, x, t, 1e-6)
            mx.nd.waitall()

        def paddle_infer(m=native, x=px):
            m.eval()
            with paddle.no_grad():
                m(x).numpy()

        def torch_infer(m=ported, x=tx):
            m.eval()
            with torch.no_grad():
                m(x).numpy()
        def gluon_infer(m=gluon, x=gx):
            with autograd.predict_mode():
                m(x).asnumpy()
        train[("paddle", name)], train[("pytorch", name)] = paddle_train, torch_train
        infer[("paddle", name)], infer[("pytorch", name)] = paddle_infer, torch_infer
        train[("gluon", name)], infer[("gluon", name)] = gluon_train, gluon_infer
        if args.compile:
            twin = pytorch_impl.create_model(name)
            twin.load_state_dict(ported.state_dict())
            net, twin_opt = compiled(twin, "cpu"), torch_recipe.make_optimizer(twin, 5e-4, 1e-5)
            train[("pytorch compiled", name)] = lambda m=net, o=twin_opt: torch_train(m, o)
            infer[("pytorch compiled", name)] = lambda m=net: torch_infer(m)

    print(f"batch {args.batch_size} x 3 x 128 x 128, float32, CPU, {args.threads} threads "
          f"(torch {torch.get_num_threads()}), median of {args.iters} interleaved iterations; "
          f"paddle {paddle.__version__}, torch {torch.__version__}, mxnet {mx.__version__}")
    train_s = interleaved(train, args.iters, args.warmup)
    infer_s = interleaved(infer, args.iters, args.warmup)
    rate = {k: (args.batch_size / train_s[k], args.batch_size / infer_s[k]) for k in train}
    frameworks = list(dict.fromkeys(framework for framework, _ in rate))
    print(f"{'framework':<17} {'model':<14} {'train img/s':>12} {'infer img/s':>12}")
    for (framework, name), (tr, inf) in rate.items():
        print(f"{framework:<17} {name:<14} {tr:12.1f} {inf:12.1f}")
    for name in ("alexnet", "alexnet_simam"):
        p = rate[("paddle", name)]
        for port in frameworks[1:]:
            t = rate[(port, name)]
            print(f"{name}: {port} port / native images/s: train {t[0] / p[0]:.2f}x, "
                  f"inference {t[1] / p[1]:.2f}x")
    for framework in frameworks:
        plain, simam = ("alexnet", "alexnet_simam")
        print(f"{framework}: SimAM costs {train_s[(framework, simam)] / train_s[(framework, plain)] - 1:+.1%} "
              f"per train step, {infer_s[(framework, simam)] / infer_s[(framework, plain)] - 1:+.1%} "
              "per inference batch")


if __name__ == "__main__":
    main()
