"""UPANets16 speed on CPU in PyTorch, Paddle and MXNet Gluon, side by side in one process.

    python -m scripts.bench_upanets --iters 15 --batch 100 --threads 2

Train step (forward, backward, the recipe's SGD step) and inference (eval mode), Gluon
hybridized in both as its train script runs it, images/s at 32x32, as medians over ``--iters`` timed iterations after
``--warmup`` untimed ones. The frameworks run interleaved (:mod:`scripts.timing`: one
iteration of each in turn, a pause after each), so a change in machine load affects all of
them alike. Thread counts: OMP_NUM_THREADS is set before the frameworks are imported (Paddle
and MXNet read it then; Paddle sets 1 when it is unset; :func:`scripts.timing.one_process`)
and each framework's after all imports (importing MXNet drops torch to one thread).
Prints ratios to PyTorch, and each port's ratio to the same network from plain fused layers
(``<framework> plain``: every BatchNorm updates its running variance the framework's own way,
the kernel alone; the ports add a C-length correction to torch's unbiased rule).
``--compile`` adds PyTorch through torch.compile (``pytorch compiled``).
"""
import argparse
import sys

import numpy as np

from common.memory import keep_freed_memory
from scripts.timing import interleaved, one_process


def _threads_from_argv(argv):
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "2"


one_process(_threads_from_argv(sys.argv))

import mxnet as mx  # noqa: E402
import paddle  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
from mxnet import autograd  # noqa: E402

import gluon_impl  # noqa: E402
import gluon_impl.torch_optim  # noqa: E402,F401  (registers 'torchsgd')
import paddle_impl  # noqa: E402
import pytorch_impl  # noqa: E402
from gluon_impl import create_model as gluon_model  # noqa: E402
from gluon_impl.layers import TorchRunningVariance  # noqa: E402
from paddle_impl import create_model as paddle_model  # noqa: E402
from pytorch_impl import create_model as torch_model  # noqa: E402
from pytorch_impl.session import compiled  # noqa: E402

LR, MOMENTUM, WD = 0.1, 0.9, 5e-4


def torch_runner(x, y, compile_model=False):
    weights = torch_model("upanets16")
    model = compiled(weights, "cpu") if compile_model else weights
    opt = torch.optim.SGD(weights.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def train():
        model.train()
        opt.zero_grad()
        TF.cross_entropy(model(tx), ty).backward()
        opt.step()

    @torch.no_grad()
    def infer():
        model.eval()
        model(tx)
    return train, infer


def plain_batch_norms(model):
    """``model`` with every BatchNorm of ``gluon_impl.layers``/``paddle_impl.layers`` updating
    its running variance the framework's own way (the fused kernel, no correction)."""
    def plain(layer):
        if hasattr(layer, "unbiased_var"):
            layer.unbiased_var = False
    return model.apply(plain)


def paddle_runner(x, y, plain=False):
    model = paddle_model("upanets16")
    if plain:
        plain_batch_norms(model)
    opt = paddle.optimizer.Momentum(learning_rate=LR, momentum=MOMENTUM,
                                    parameters=model.parameters(), weight_decay=WD)
    px, py = paddle.to_tensor(x), paddle.to_tensor(y)

    def train():
        model.train()
        paddle.nn.functional.cross_entropy(model(px), py).backward()
        opt.step()
        opt.clear_grad()

    @paddle.no_grad()
    def infer():
        model.eval()
        model(px).numpy()
    return train, infer


def gluon_runner(x, y, plain=False):
    train_model, infer_model = gluon_model("upanets16"), gluon_model("upanets16")
    for m in (train_model, infer_model):
        m.initialize(mx.init.Xavier())
        if plain:
            plain_batch_norms(m)
    gx, gy = mx.nd.array(x), mx.nd.array(y)
    running_variance = TorchRunningVariance(train_model)  # as gluon_impl.train_upanets
    running_variance.measure(gx[:1])
    for m in (train_model, infer_model):
        m.hybridize(static_alloc=True, static_shape=True)
    trainer = mx.gluon.Trainer(train_model.collect_params(), "torchsgd",
                               {"learning_rate": LR, "momentum": MOMENTUM, "wd": WD})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()

    def train():
        with running_variance.step([len(x)]):
            with autograd.record():
                loss = loss_fn(train_model(gx), gy).mean()
            loss.backward()
        trainer.step(1)
        mx.nd.waitall()

    def infer():
        infer_model(gx).wait_to_read()
    return train, infer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true",
                        help="also time PyTorch through torch.compile (the warm-up compiles)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the train and predict scripts do (common/memory.py)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    runners = {"pytorch": torch_runner(x, y), "paddle": paddle_runner(x, y), "gluon": gluon_runner(x, y),
               "paddle plain": paddle_runner(x, y, plain=True), "gluon plain": gluon_runner(x, y, plain=True)}
    if args.compile:
        runners["pytorch compiled"] = torch_runner(x, y, compile_model=True)
    for framework in (gluon_impl, paddle_impl, pytorch_impl):  # after every import
        framework.set_threads(args.threads)
    speed = {}
    for kind, index in (("train", 0), ("infer", 1)):
        seconds = interleaved({fw: fns[index] for fw, fns in runners.items()}, args.iters, args.warmup)
        speed.update({(fw, kind): args.batch / t for fw, t in seconds.items()})
    print(f"UPANets16, batch {args.batch}, 32x32, CPU, {args.threads} threads "
          f"(torch {torch.get_num_threads()}), median of {args.iters} iterations "
          "(images/s; ratio to PyTorch)")
    for kind in ("train", "infer"):
        for fw in runners:
            plain = (f"  port / plain x{speed[fw, kind] / speed[fw + ' plain', kind]:.2f}"
                     if fw + " plain" in runners else "")
            print(f"  {kind:5s} {fw:16s} {speed[fw, kind]:8.1f} img/s  "
                  f"x{speed[fw, kind] / speed['pytorch', kind]:.2f}{plain}")


if __name__ == "__main__":
    main()
