"""The epoch loop of a train script, whatever its framework: train, evaluate, log, keep the
best and last weights, and resume exactly.

A framework-specific *session* does the numerics; :func:`fit` only needs it to have:

* ``train_batch(images, labels, lr, epoch, batch)``: one optimizer step at rate ``lr`` on
  batch ``batch`` of ``epoch`` (numpy arrays; the indices let a recipe draw per-batch mixup
  or seed per-epoch dropout), and ``eval_batch(images, labels)``, without update; each
  returns ``(summed loss, predicted classes)``; the predictions may rank several classes per
  image (an N x k array, best first), and fit then also reports top-5 accuracy;
* ``weights_ext`` and ``save_weights(path)``: the model's weights alone, in the framework's
  native format, written atomically; ``load_weights(path)``;
* ``optimizer_ext`` and ``save_optimizer(path)`` (atomic) / ``load_optimizer(path)``.

The learning rate comes from ``lr_at(epoch, batch, batches)`` at every step (``batches``:
the steps of an epoch), so a schedule may change per epoch or per iteration.

In a distributed run (one process per device, each with its share of every batch), every
process calls :func:`fit` with ``reduce`` (sums an array over the processes, so the metrics
cover the whole dataset), and only the main one writes the run folder and the log.

The run folder then holds ``model-best.<ext>``, ``model-last.<ext>``, the optimizer state
``train-state.<optimizer_ext>``, ``metrics.jsonl``, ``learning-curves.png`` and
``train-state.json`` (epoch, best accuracy and its epoch), written last, so that a run
stopped at any point resumes from the last complete epoch. The loader is deterministic per
(seed, epoch), so a resumed run sees the batches it would have seen.
"""
import json
import os
import time
from typing import NamedTuple, Optional

import numpy as np

from . import plots
from .checkpoint import CheckpointError, atomic_open
from .convert import ConversionError
from .run_folder import STATE_FILE, run_paths  # noqa: F401  (STATE_FILE: for callers)
from .runs import Progress, refuse


class Pass(NamedTuple):
    """One pass over a loader: mean loss, accuracy, the predicted classes, samples per second
    of the whole pass, the seconds spent in the session's step (for evaluation: inference),
    the top-5 accuracy when the session ranks its predictions, and the images skipped
    because they could not be decoded."""
    loss: float
    acc: float
    predictions: np.ndarray
    samples_per_s: float
    step_s: float
    top5: Optional[float] = None
    skipped: int = 0


class Result(NamedTuple):
    """What :func:`fit` returns: the best accuracy, its epoch, and the evaluation after the
    last epoch it trained (None when it had no epoch left to train)."""
    best_acc: float
    best_epoch: int
    last: Optional[Pass]


def batches_per_epoch(loader, max_batches):
    return len(loader) if max_batches is None else min(len(loader), max_batches)


def run_pass(loader, epoch, step, max_batches, desc, reduce=None, log=None, interval=0, lr=None):
    """Run ``step(images, labels, batch) -> (summed loss, predicted classes)`` over the first
    ``max_batches`` batches of ``loader``'s ``epoch``; ``reduce`` sums the pass's totals over
    the processes of a distributed run. ``log`` gets a progress line every ``interval``
    batches (:class:`common.runs.Progress`), with the rate ``lr(batch)``."""
    sums = np.zeros(5)  # summed loss, top-1 hits, top-5 hits, samples, skipped images
    predictions, step_s, ranked = [], 0.0, False
    count = batches_per_epoch(loader, max_batches)
    start = time.perf_counter()
    bar = Progress(count, desc, log, interval, lr)
    for index, (images, labels) in enumerate(loader.epoch(epoch)):
        if index == count:
            break
        begin = time.perf_counter()
        loss, predicted = step(images, labels, index)
        step_s += time.perf_counter() - begin
        ranked = predicted.ndim == 2
        hits = predicted.reshape(len(labels), -1)[:, :5] == labels[:, None]
        predictions.append(predicted[:, 0] if ranked else predicted)
        sums[:4] += (loss, hits[:, 0].sum(), hits.any(1).sum(), len(labels))
        bar.update(index, sums[0] / sums[3], sums[1] / sums[3], sums[3])
    bar.close()
    elapsed = time.perf_counter() - start
    sums[4] = loader.skipped(epoch)
    total_loss, correct, top5, seen, skipped = sums if reduce is None else reduce(sums)
    if seen == 0:
        raise ValueError(f"{desc}: no batch to run (dataset smaller than one batch?)")
    return Pass(total_loss / seen, correct / seen,
                np.concatenate(predictions) if predictions else np.zeros(0, np.int64),
                seen / elapsed, step_s, top5 / seen if ranked else None, int(skipped))


def evaluate(session, loader, max_batches, desc="test", reduce=None, log=None, interval=0):
    """The session's evaluation over ``loader`` (its first ``max_batches`` batches)."""
    return run_pass(loader, 0, lambda x, y, _: session.eval_batch(x, y), max_batches, desc,
                    reduce, log, interval)


def save_train_state(path, **state):
    """Write ``train-state.json``: the last step of an epoch, what ``--resume`` continues from."""
    with atomic_open(path, "w") as f:
        json.dump(state, f)


def fit(args, log, session, train_loader, test_loader, lr_at, reduce=None, main=True):
    """Train ``session`` for ``args.epochs`` epochs at the rates ``lr_at(epoch, batch,
    batches)``, evaluating on ``test_loader`` after each, or continue the run in ``log.dir``
    with ``args.resume``. ``args.stop_after``: train at most that many epochs in this call
    (the schedule still spans ``args.epochs``; ``--resume`` continues). Progress lines come
    every ``args.log_interval`` batches; the learning curves are redrawn after each epoch.
    Returns a :class:`Result`.

    A distributed run passes ``reduce(array) -> array``, the sum over its processes; its
    processes other than the main one pass ``main=False``: they train and evaluate in step
    but write nothing (their ``log`` needs only ``dir``)."""
    paths = run_paths(log.dir, session)
    start, best_acc, best_epoch, last = 0, -1.0, -1, None
    if args.resume:  # the run folder was checked (common.runs.open_run)
        try:
            with open(paths["state"]) as f:
                saved = json.load(f)
            start, best_acc, best_epoch = saved["epoch"] + 1, saved["best_acc"], saved["best_epoch"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            refuse(f"--resume: {paths['state']} is damaged ({type(e).__name__}: {e})")
        try:
            session.load_weights(paths["last"])
            session.load_optimizer(paths["optimizer"])
        except (CheckpointError, ConversionError) as e:  # not this model's run, or damaged
            refuse(f"--resume: {e}")
        if main:
            log.drop_epochs(start)  # metrics of an epoch that was interrupted before its state
            log.info("resumed after epoch %d (best accuracy %.4f at epoch %d)", saved["epoch"],
                     best_acc, best_epoch)
    steps = batches_per_epoch(train_loader, args.max_batches)
    end = args.epochs if args.stop_after is None else min(args.epochs, start + args.stop_after)
    for epoch in range(start, end):
        train = run_pass(train_loader, epoch, lambda x, y, b: session.train_batch(
            x, y, lr_at(epoch, b, steps), epoch, b), args.max_batches, f"train {epoch}", reduce,
            log, args.log_interval, lambda b: lr_at(epoch, b, steps))
        last = evaluate(session, test_loader, args.max_batches, f"test {epoch}", reduce, log,
                        args.log_interval)
        if last.acc > best_acc:
            best_acc, best_epoch = last.acc, epoch
            if main:
                session.save_weights(paths["best"])
        if not main:  # the main process alone writes the run folder
            continue
        session.save_weights(paths["last"])
        if args.save_period and (epoch + 1) % args.save_period == 0 and epoch + 1 < args.epochs:
            session.save_weights(os.path.join(log.dir, f"model-epoch{epoch}.{session.weights_ext}"))
        session.save_optimizer(paths["optimizer"])
        log.epoch(epoch, lr=lr_at(epoch, steps - 1, steps), train_loss=train.loss,
                  train_acc=train.acc, val_loss=last.loss, val_acc=last.acc,
                  samples_per_s=train.samples_per_s, best_acc=best_acc, best_epoch=best_epoch,
                  skipped_images=train.skipped + last.skipped,
                  **{f"{name}_top5": p.top5 for name, p in (("train", train), ("val", last))
                     if p.top5 is not None})
        plots.learning_curves(log.history(), os.path.join(log.dir, plots.CURVES_FILE))
        save_train_state(paths["state"], epoch=epoch, best_acc=best_acc, best_epoch=best_epoch)
    return Result(best_acc, best_epoch, last)
