"""The Residual Attention Network training recipe (the Gluon re-implementation's
``cifar10_train.py`` / ``train.py``), framework-free, shared by the Gluon script and its
PyTorch port so that both read the same flags, schedule and targets.

* flags: ``--model``/``--num-layers``, ``--momentum``, ``--optimizer`` sgd|nag, ``--lr-mode``
  step (``--lr-steps``, ``--lr-factor``) | cosine (``--warmup-epochs``), ``--mix-up``/``--alpha``
  (off for the last 10% of the epochs), ``--epsilon`` (label smoothing), ``--ctx``,
  ``--dtype``, ``--init-from``, ``--stop-after``, plus :func:`common.runs.add_common_args`;
* the learning rate of MXNet update ``num_update`` (1 for the first step) from
  :func:`common.schedules.gluoncv_lr`;
* dense targets: label-smoothed one-hot (on 1 - e, off e / (K - 1)), mixed with the reversed
  batch when mixup is on.
"""
import argparse

import numpy as np

from . import labels, runs
from .mixup import MixupSampler, mixup
from .schedules import gluoncv_lr

DEPTHS = (56, 92, 128, 164, 236, 452)


def build_parser(description, models):
    """The recipe's flags; ``models`` are the registry names ``--model`` accepts."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = parser.add_argument_group("model and recipe")
    g.add_argument("--model", default=None, help="registry name (default attention<num-layers>_cifar)")
    g.add_argument("--num-layers", type=int, default=56, choices=DEPTHS)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--optimizer", choices=("sgd", "nag"), default="nag")
    g.add_argument("--lr-mode", choices=("step", "cosine"), default="cosine")
    g.add_argument("--lr-steps", default="80,120", help="epochs of the step decays (--lr-mode step)")
    g.add_argument("--lr-factor", type=float, default=0.1)
    g.add_argument("--warmup-epochs", type=int, default=0, help="linear warmup from 0")
    g.add_argument("--mix-up", type=int, default=0, choices=(0, 1), help="1: mixup training")
    g.add_argument("--alpha", type=float, default=1.0, help="mixup Beta(alpha, alpha)")
    g.add_argument("--epsilon", type=float, default=0.0, help="label smoothing")
    g.add_argument("--ctx", default="cpu", help="'cpu' or comma-separated GPU ids (first one used)")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    g.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many epochs of this invocation (the schedule still "
                        "spans --epochs; continue with --resume)")
    g.add_argument("--init-from", default=None,
                   help="start from these weights (.params, .pth or .pdparams) instead of MSRAPrelu")
    runs.add_common_args(parser, epochs=200, batch_size=64, lr=0.1, wd=1e-4)
    parser.set_defaults(_models=tuple(models))
    return parser


def parse(parser, argv=None):
    """Parse and check the flags; fills ``args.model`` and ``args.lr_steps`` (a list)."""
    args = runs.parse(parser, argv)
    args.model = args.model or f"attention{args.num_layers}_cifar"
    if args.model not in args._models:
        parser.error(f"--model {args.model!r} is not a registered model; choose one of "
                     f"{', '.join(args._models)}")
    try:
        args.lr_steps = [int(s) for s in str(args.lr_steps).split(",") if s.strip()]
    except ValueError:
        parser.error(f"--lr-steps must be comma-separated epochs, got {args.lr_steps!r}")
    if not 0 <= args.epsilon < 1:
        parser.error(f"--epsilon must lie in [0, 1), got {args.epsilon}")
    if args.alpha <= 0:
        parser.error(f"--alpha must be positive, got {args.alpha}")
    if args.warmup_epochs >= args.epochs and args.warmup_epochs > 0:
        parser.error("--warmup-epochs must be smaller than --epochs")
    if args.stop_after is not None and args.stop_after < 1:
        parser.error("--stop-after must be at least 1")
    if args.ctx != "cpu" and not all(s.strip().isdigit() for s in args.ctx.split(",")):
        parser.error(f"--ctx must be 'cpu' or GPU ids like '0,1', got {args.ctx!r}")
    return args


class Schedule:
    """``lr(num_update)`` of the recipe for ``iters_per_epoch`` updates per epoch."""

    def __init__(self, args, iters_per_epoch):
        warmup = args.warmup_epochs * iters_per_epoch
        self.kwargs = dict(base_lr=args.lr, total_iters=args.epochs * iters_per_epoch,
                           warmup_iters=warmup, mode=args.lr_mode,
                           step_iters=[(e - args.warmup_epochs) * iters_per_epoch for e in args.lr_steps],
                           step_factor=args.lr_factor)

    def __call__(self, num_update):
        return gluoncv_lr(num_update, **self.kwargs)


class Targets:
    """Dense training targets of batch ``index`` of ``epoch``, and the images mixed with
    them: smoothed one-hot, mixed (mixup) before the last 10% of the epochs."""

    def __init__(self, args, num_classes):
        self.num_classes, self.epsilon, self.epochs = num_classes, args.epsilon, args.epochs
        self.sampler = MixupSampler(args.alpha, args.seed) if args.mix_up else None

    def mixing(self, epoch):
        return self.sampler is not None and epoch < 0.9 * self.epochs

    def __call__(self, images, label_ids, epoch, index):
        dense = labels.smooth_one_hot(label_ids, self.num_classes, self.epsilon, dtype=images.dtype)
        if not self.mixing(epoch):
            return images, dense
        return mixup(images, dense, self.sampler(epoch, index))


def iters_per_epoch(loader, max_batches):
    return len(loader) if max_batches is None else min(len(loader), max_batches)


def epochs_to_run(args, start_epoch):
    """The epochs this invocation trains: from ``start_epoch`` to ``--epochs`` or ``--stop-after``."""
    end = args.epochs if args.stop_after is None else min(args.epochs, start_epoch + args.stop_after)
    return range(start_epoch, end)


def numpy_dtype(args):
    return np.dtype(args.dtype)
