"""Train the Paddle port of SAN (paddle_impl/models/san.py) with the recipe of
``pytorch_impl.train_san`` (flags, YAML configs and loaders in common/san_recipe.py), in one
process: SGD with momentum 0.9 and weight decay 1e-4, cosine learning rate per epoch, label
smoothing 0.1, top-1/top-5.

    python -m paddle_impl.train_san                       # embedded digits, 32x32, smoke run
    python -m paddle_impl.train_san --dataset cifar10 --data-dir ../shared/data/cifar10-mini

The run folder holds ``train.log``, ``metrics.jsonl``, TensorBoard scalars,
``model-last.pdparams`` / ``model-best.pdparams`` (weights only) and ``train-state.pdopt`` +
``train-state.json`` (optimizer; epoch and best accuracy) for ``--resume``.
"""
import json
import math
import os
import sys
import time

import numpy as np
import paddle
import paddle.nn.functional as F

from common.checkpoint import atomic_open, atomic_path, load_pdparams
from common.labels import smooth_uniform
from common.runs import RunLog, default_log_dir, progress
from common.san_recipe import build_loaders, parse_args
from common.schedules import cosine_lr
from paddle_impl import create_model


def smoothed_cross_entropy(logits, labels, eps):
    """Mean of ``sum(-target * log_softmax)`` with targets (1 - eps) one-hot + eps / K."""
    targets = paddle.to_tensor(smooth_uniform(labels, logits.shape[1], eps), dtype=logits.dtype)
    return -(targets * F.log_softmax(logits, 1)).sum(1).mean()


def batch_metrics(loss, logits, labels):
    """(loss * n, top-1 hits, top-5 hits, n) of one batch."""
    top5 = np.argsort(-logits, 1)[:, :5]
    hits = top5 == labels[:, None]
    return np.array([loss * len(labels), hits[:, 0].sum(), hits.any(1).sum(), len(labels)])


def train_epoch(model, loader, optimizer, epoch, args):
    model.train()
    sums = np.zeros(4)
    total = min(len(loader), args.max_batches or len(loader))
    start = time.time()
    for b, (images, labels) in enumerate(progress(loader.epoch(epoch), total, f"train {epoch}")):
        if b == total:
            break
        logits = model(paddle.to_tensor(images))
        loss = smoothed_cross_entropy(logits, labels, args.label_smoothing)
        optimizer.clear_grad()
        loss.backward()
        optimizer.step()
        sums += batch_metrics(float(loss), logits.numpy(), labels)
    return sums[0] / sums[3], sums[1] / sums[3], sums[2] / sums[3], sums[3] / (time.time() - start)


@paddle.no_grad()
def evaluate(model, loader, args):
    model.eval()
    sums = np.zeros(4)
    total = min(len(loader), args.max_batches or len(loader))
    for b, (images, labels) in enumerate(progress(loader.epoch(0), total, "val")):
        if b == total:
            break
        keep = min(len(labels), max(0, len(loader.dataset) - b * loader.global_batch))
        if keep:  # the last batch is padded with repeated images: count each image once
            logits = model(paddle.to_tensor(images[:keep]))
            loss = F.cross_entropy(logits, paddle.to_tensor(labels[:keep]))
            sums += batch_metrics(float(loss), logits.numpy(), labels[:keep])
    return sums[0] / sums[3], sums[1] / sums[3], sums[2] / sums[3]


def save_weights(model, path):
    with atomic_path(path) as tmp:
        paddle.save(model.state_dict(), tmp)


def main(argv=None):
    args = parse_args(__doc__.split("\n\n")[0], argv)
    paddle.seed(args.seed)
    train, _, train_loader, test_loader = build_loaders(args, 0, 1)
    model = create_model(args.model, num_classes=train.num_classes, layers=args.layers,
                         kernels=args.kernels)
    optimizer = paddle.optimizer.Momentum(learning_rate=args.lr, momentum=args.momentum,
                                          weight_decay=args.wd, parameters=model.parameters())
    log_dir = default_log_dir(args, args.model)
    state_json = os.path.join(log_dir, "train-state.json")
    start_epoch, best_acc = 0, 0.0
    if args.resume:
        if not os.path.exists(state_json):
            raise SystemExit(f"--resume: {state_json} does not exist (nothing to resume)")
        with open(state_json) as f:
            state = json.load(f)
        model.set_state_dict(load_pdparams(os.path.join(log_dir, "model-last.pdparams")))
        optimizer.set_state_dict(load_pdparams(os.path.join(log_dir, "train-state.pdopt")))
        start_epoch, best_acc = state["epoch"] + 1, state["best_acc"]
    log = RunLog(log_dir, args.model, resume=args.resume)
    log.info("%s (Paddle) on %s (%d images, %d classes), %d parameters", args.model, args.dataset,
             len(train), train.num_classes,
             sum(p.size for p in model.parameters() if not p.stop_gradient))
    for epoch in range(start_epoch, args.epochs):
        lr = cosine_lr(epoch, args.lr, args.epochs)
        optimizer.set_lr(lr)
        train_loss, train_acc, train_top5, speed = train_epoch(model, train_loader, optimizer,
                                                                epoch, args)
        val_loss, val_acc, val_top5 = evaluate(model, test_loader, args)
        if not all(math.isfinite(v) for v in (train_loss, val_loss)):
            raise SystemExit(f"epoch {epoch}: the loss is not finite (lower --lr?)")
        save_weights(model, os.path.join(log_dir, "model-last.pdparams"))
        if val_acc > best_acc or epoch == 0:
            best_acc = max(best_acc, val_acc)
            save_weights(model, os.path.join(log_dir, "model-best.pdparams"))
        if args.save_period > 1 and (epoch + 1) % args.save_period == 0:
            save_weights(model, os.path.join(log_dir, f"model-epoch{epoch + 1}.pdparams"))
        with atomic_path(os.path.join(log_dir, "train-state.pdopt")) as tmp:
            paddle.save(optimizer.state_dict(), tmp)
        with atomic_open(state_json, "w") as f:
            json.dump({"epoch": epoch, "best_acc": best_acc}, f)
        log.epoch(epoch, lr=lr, train_loss=train_loss, train_acc=train_acc, train_top5=train_top5,
                  val_loss=val_loss, val_acc=val_acc, val_top5=val_top5, samples_per_s=speed)
    log.info("best val_acc %.4f; run folder %s", best_acc, log_dir)
    log.close()


if __name__ == "__main__":
    sys.exit(main())
