"""Train a Residual Attention Network natively in MXNet Gluon (the recipe of the Gluon
re-implementation: MSRAPrelu init, hybridized network, SGD or NAG with gluoncv's warmup +
cosine or step schedule, mixup and label smoothing with dense targets).

    python -m gluon_impl.train_attention --num-layers 56 --epochs 200 --mix-up 1 --alpha 1.0
    python -m gluon_impl.train_attention --dataset cifar10 --data-dir ../shared/data/cifar10-mini

The run folder (``--log-dir``) gets ``train.log``, ``metrics.jsonl``, mxboard scalars,
``model-last.params`` / ``model-best.params`` (``save_parameters``; weights only), and the
resume state ``train-state.json`` + ``train-state-momentum.params`` (momentum buffers by
parameter name), all written atomically. ``--resume`` continues exactly where it stopped.
"""
import json
import os
import sys
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from common import attention_recipe as recipe
from common import runs
from common.checkpoint import (atomic_open, atomic_path, load_gluon_params, load_pdparams,
                               save_gluon_params)
from common.convert import from_canonical, match_state, to_canonical
from gluon_impl import create_model, list_models

STATE, MOMENTUM = "train-state.json", "train-state-momentum.params"


def context(spec):
    return mx.cpu() if spec == "cpu" else mx.gpu(int(spec.split(",")[0]))


def load_weights(net, path):
    """Weights from a Gluon, PyTorch or Paddle checkpoint, through the shared naming rules."""
    params = net._collect_params_with_prefix()
    shapes = {name: p.shape for name, p in params.items()}
    if path.endswith(".params"):
        state = load_gluon_params(path)
    elif path.endswith(".pdparams"):
        state = from_canonical(to_canonical(load_pdparams(path), "paddle"), "gluon", shapes)
    else:
        import torch  # only for reading a .pth; mxboard is not imported yet
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        state = from_canonical(to_canonical({k: v.numpy() for k, v in tensors.items()}, "pytorch"),
                               "gluon", shapes)
    match_state(state, shapes, what=path)
    for name, p in params.items():
        p.set_data(mx.nd.array(state[name], dtype=p.dtype, ctx=p.list_ctx()[0]))


class MomentumState:
    """The Trainer's momentum buffers by parameter name (no pickles: a ``.params`` file)."""

    def __init__(self, net, trainer):
        self.names = list(net._collect_params_with_prefix())
        self.trainer = trainer

    def save(self, path):
        updater = self.trainer._updaters[0]
        state = {name: updater.states[i].asnumpy() for i, name in enumerate(self.names)
                 if updater.states.get(i) is not None}
        save_gluon_params(state, path)

    def load(self, path, ctx):
        updater = self.trainer._updaters[0]
        saved = load_gluon_params(path)
        for i, name in enumerate(self.names):
            array = saved.get(name)
            if array is not None:
                updater.states[i] = mx.nd.array(array, dtype=array.dtype, ctx=ctx)
                updater.states_synced[i] = True


def evaluate(net, loader, ctx, dtype, max_batches):
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    total_loss, correct, seen = 0.0, 0, 0
    batches = recipe.iters_per_epoch(loader, max_batches)
    for _, (x, y) in zip(range(batches), runs.progress(loader.epoch(0), batches, "val")):
        out = net(mx.nd.array(x, ctx=ctx, dtype=dtype))
        label = mx.nd.array(y, ctx=ctx, dtype=dtype)
        total_loss += float(loss_fn(out, label).sum().asscalar())
        correct += int((out.argmax(axis=1).asnumpy().astype(np.int64) == y).sum())
        seen += len(y)
    return total_loss / seen, correct / seen


def main(argv=None):
    parser = recipe.build_parser(__doc__.splitlines()[0], list_models())
    args = recipe.parse(parser, argv)
    log_dir = runs.default_log_dir(args, f"gluon-{args.model}")
    if args.resume and not os.path.exists(os.path.join(log_dir, STATE)):
        parser.error(f"--resume: no {STATE} in {log_dir}")
    train_set, test_set, train_loader, test_loader = runs.build_loaders(args, *runs.cifar_transforms())
    dtype = recipe.numpy_dtype(args)
    ctx = context(args.ctx)
    mx.random.seed(args.seed)

    net = create_model(args.model, num_classes=train_set.num_classes)
    net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    net.cast(dtype.name)
    if args.init_from:
        load_weights(net, args.init_from)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), args.optimizer,
                            {"learning_rate": args.lr, "momentum": args.momentum, "wd": args.wd})
    momentum = MomentumState(net, trainer)
    ipe = recipe.iters_per_epoch(train_loader, args.max_batches)
    schedule = recipe.Schedule(args, ipe)
    targets = recipe.Targets(args, train_set.num_classes)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)

    start_epoch, num_update, best_acc = 0, 0, 0.0
    if args.resume:
        with open(os.path.join(log_dir, STATE)) as f:
            state = json.load(f)
        load_weights(net, os.path.join(log_dir, "model-last.params"))
        if os.path.exists(os.path.join(log_dir, MOMENTUM)):
            momentum.load(os.path.join(log_dir, MOMENTUM), ctx)
        start_epoch, num_update, best_acc = state["epoch"] + 1, state["num_update"], state["best_acc"]

    from mxboard import SummaryWriter  # after any torch import: their protobufs clash
    log = runs.RunLog(log_dir, f"gluon-{args.model}", resume=args.resume, tensorboard=False)
    board = SummaryWriter(logdir=log_dir, verbose=False)
    log.info("gluon %s on %s (%d train / %d test images), %s: %s", args.model, args.dataset,
             len(train_set), len(test_set), "resuming" if args.resume else "start",
             {k: v for k, v in vars(args).items() if not k.startswith("_")})
    for epoch in recipe.epochs_to_run(args, start_epoch):
        total_loss, correct, seen = 0.0, 0, 0
        tic = time.time()
        batches = runs.progress(train_loader.epoch(epoch), ipe, f"epoch {epoch}")
        for index, (x, y) in zip(range(ipe), batches):
            x, dense = targets(x.astype(dtype), y, epoch, index)
            num_update += 1
            trainer.set_learning_rate(schedule(num_update))
            data = mx.nd.array(x, ctx=ctx, dtype=dtype)
            with autograd.record():
                out = net(data)
                loss = loss_fn(out, mx.nd.array(dense, ctx=ctx, dtype=dtype))
            loss.backward()
            trainer.step(len(y))
            total_loss += float(loss.sum().asscalar())
            correct += int((out.argmax(axis=1).asnumpy().astype(np.int64) == y).sum())
            seen += len(y)
        speed = seen / (time.time() - tic)
        val_loss, val_acc = evaluate(net, test_loader, ctx, dtype, args.max_batches)
        metrics = dict(train_loss=total_loss / seen, train_acc=correct / seen, val_loss=val_loss,
                       val_acc=val_acc, lr=trainer.learning_rate, samples_per_s=speed,
                       mixup=targets.mixing(epoch))
        log.epoch(epoch, **metrics)
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "samples_per_s"):
            board.add_scalar(key.replace("_", "/", 1), metrics[key], epoch)

        with atomic_path(os.path.join(log_dir, "model-last.params")) as tmp:
            net.save_parameters(tmp)
        if val_acc > best_acc or epoch == 0:
            best_acc = max(best_acc, val_acc)
            with atomic_path(os.path.join(log_dir, "model-best.params")) as tmp:
                net.save_parameters(tmp)
        if (epoch + 1) % args.save_period == 0:
            with atomic_path(os.path.join(log_dir, f"model-epoch{epoch + 1}.params")) as tmp:
                net.save_parameters(tmp)
        momentum.save(os.path.join(log_dir, MOMENTUM))
        with atomic_open(os.path.join(log_dir, STATE), "w") as f:
            json.dump({"epoch": epoch, "num_update": num_update, "best_acc": best_acc,
                       "model": args.model}, f)
    board.close()
    log.info("done: best val_acc %.4f; run folder %s", best_acc, log_dir)
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
