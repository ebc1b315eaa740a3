"""The epoch loop of a train script, whatever its framework: train, evaluate, log, keep the
best and last weights, and resume exactly.

A framework-specific *session* does the numerics; :func:`fit` only needs it to have:

* ``train_batch(images, labels, lr)`` and ``eval_batch(images, labels)`` on numpy batches,
  each returning ``(summed loss, number correct)``;
* ``weights_ext`` and ``save_weights(path)``: the model's weights alone, in the framework's
  native format, written atomically;
* ``save_optimizer(path)`` / ``load_optimizer(path)`` (atomic) and ``load_weights(path)``.

The run folder then holds ``model-best.<ext>``, ``model-last.<ext>``, the optimizer state
``train-state.<ext>`` and ``train-state.json`` (epoch, best accuracy and its epoch), written
last, so that a run stopped at any point resumes from the last complete epoch. The loader is
deterministic per (seed, epoch), so a resumed run sees the batches it would have seen.
"""
import json
import os
import time

from .checkpoint import atomic_open
from .runs import progress

STATE_FILE = "train-state.json"


def run_paths(log_dir, weights_ext, optimizer_ext):
    return dict(best=os.path.join(log_dir, f"model-best.{weights_ext}"),
                last=os.path.join(log_dir, f"model-last.{weights_ext}"),
                optimizer=os.path.join(log_dir, f"train-state.{optimizer_ext}"),
                state=os.path.join(log_dir, STATE_FILE))


def _epoch_pass(loader, epoch, step, max_batches, desc):
    total_loss = correct = seen = 0
    count = len(loader) if max_batches is None else min(len(loader), max_batches)
    start = time.perf_counter()
    bar = progress(loader.epoch(epoch), count, desc)
    for index, (images, labels) in enumerate(bar):
        if index == count:
            break
        loss, right = step(images, labels)
        total_loss, correct, seen = total_loss + loss, correct + right, seen + len(labels)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    bar.close()
    elapsed = time.perf_counter() - start
    if seen == 0:
        raise ValueError(f"{desc}: no batch to run (dataset smaller than one batch?)")
    return total_loss / seen, correct / seen, seen / elapsed


def fit(args, log, session, train_loader, test_loader, lr_at, optimizer_ext):
    """Train ``session`` for ``args.epochs`` epochs (``lr_at(epoch)`` gives the rate), or
    continue the run in ``log.dir`` with ``args.resume``. Returns the best accuracy."""
    paths = run_paths(log.dir, session.weights_ext, optimizer_ext)
    start, best_acc, best_epoch = 0, -1.0, -1
    if args.resume:
        if not os.path.exists(paths["state"]):
            raise SystemExit(f"--resume: no {STATE_FILE} in {log.dir}; nothing to continue")
        with open(paths["state"]) as f:
            saved = json.load(f)
        session.load_weights(paths["last"])
        session.load_optimizer(paths["optimizer"])
        start, best_acc, best_epoch = saved["epoch"] + 1, saved["best_acc"], saved["best_epoch"]
        log.info("resumed after epoch %d (best accuracy %.4f at epoch %d)", saved["epoch"],
                 best_acc, best_epoch)
    for epoch in range(start, args.epochs):
        lr = lr_at(epoch)
        train_loss, train_acc, speed = _epoch_pass(
            train_loader, epoch, lambda x, y: session.train_batch(x, y, lr), args.max_batches,
            f"train {epoch}")
        val_loss, val_acc, _ = _epoch_pass(test_loader, 0, session.eval_batch, args.max_batches,
                                           f"test {epoch}")
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            session.save_weights(paths["best"])
        session.save_weights(paths["last"])
        if args.save_period and (epoch + 1) % args.save_period == 0 and epoch + 1 < args.epochs:
            session.save_weights(os.path.join(log.dir, f"model-epoch{epoch}.{session.weights_ext}"))
        session.save_optimizer(paths["optimizer"])
        with atomic_open(paths["state"], "w") as f:
            json.dump(dict(epoch=epoch, best_acc=best_acc, best_epoch=best_epoch), f)
        log.epoch(epoch, lr=lr, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                  val_acc=val_acc, samples_per_s=speed, best_acc=best_acc, best_epoch=best_epoch)
    return best_acc
