"""The Residual Attention Network training recipe (the Gluon re-implementation's
``cifar10_train.py`` / ``train.py``), framework-free, shared by the Gluon script and its
PyTorch port so that both read the same flags, batches, schedule and targets.

* flags: ``--model``/``--num-layers``, ``--momentum``, ``--optimizer`` sgd|nag, ``--lr-mode``
  step (``--lr-steps``, ``--lr-factor``) | cosine (``--warmup-epochs``), ``--mixup-alpha``
  (off for the last 10% of the epochs; the original's ``--mix-up 1 --alpha A`` too),
  ``--label-smoothing`` (the original's ``--epsilon``), ``--norm-stats``, ``--dtype``, a
  framework's device flags (``add_args``; Gluon's ``--ctx`` is checked as it is parsed,
  ``gluon_impl.session.context_names``), plus :func:`common.runs.add_common_args` (where
  ``--init-from`` is this family's older spelling of ``--initial-checkpoint``);
* images: pad-4 random crop of 32 and flip, normalised as :func:`recipe_transforms` says;
* the learning rate of MXNet update ``num_update`` (1 for the first step) from
  :func:`common.schedules.gluoncv_lr`, set at every iteration;
* dense targets: label-smoothed one-hot (on 1 - e, off e / (K - 1)), mixed with the reversed
  batch when mixup is on.

A script gives :func:`train` its framework's subclass of :class:`Session`.
"""
import argparse
import os

import numpy as np

from . import labels, runs
from .data import IMAGENET_MEAN, IMAGENET_STD
from .fit import fit
from .mixup import MixupSampler, mixup
from .processes import Processes
from .schedules import gluoncv_lr

DEPTHS = (56, 92, 128, 164, 236, 452)
# cifar10_train.py's CreateAugmenter: [0, 1] pixels minus ImageNet's mean, over its std (not CIFAR's)
NORM_STATS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "dataset": None}


DATASETS = ("digits", "cifar10", "cifar100")  # the recipe's 32x32 pipeline


def recipe_models(models):
    """The registry's models this recipe trains: the CIFAR variants of every depth."""
    return [m for m in models if m.startswith("attention") and m.endswith("_cifar")]


def build_parser(framework, models, add_args=None):
    """The recipe's flags; ``models`` are the framework registry's names (``--model``
    accepts :func:`recipe_models` of them) and ``add_args(parser)`` adds a framework's own."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {framework}_impl.train_attention",
        description=f"Train a Residual Attention Network ({framework}) with the recipe of the "
                    f"Gluon re-implementation.",
        formatter_class=runs.HelpFormatter)
    g = parser.add_argument_group("model and recipe")
    g.add_argument("--model", default=None, choices=recipe_models(models),
                   help="registry name (default attention<num-layers>_cifar)")
    g.add_argument("--num-layers", type=int, default=56, choices=DEPTHS,
                   help="depth, when --model is not given")
    g.add_argument("--momentum", type=float, default=0.9, help="momentum of sgd / nag")
    g.add_argument("--optimizer", choices=("sgd", "nag"), default="nag", help="MXNet's update rule")
    g.add_argument("--lr-mode", choices=("step", "cosine"), default="cosine", help="schedule")
    g.add_argument("--lr-steps", default="80,120", help="epochs of the step decays (--lr-mode step)")
    g.add_argument("--lr-factor", type=float, default=0.1, help="factor of each step decay")
    g.add_argument("--warmup-epochs", type=int, default=0, help="linear warmup from 0")
    g.add_argument("--mixup-alpha", type=float, default=0.0,
                   help="mixup with lambda ~ Beta(a, a) before the last 10%% of the epochs; 0: off")
    g.add_argument("--mix-up", type=int, default=None, choices=(0, 1),
                   help="the original's switch: 1 = mixup with --alpha")
    g.add_argument("--alpha", type=float, default=None,
                   help="the original's mixup Beta(alpha, alpha) with --mix-up 1 (there 1.0 by default)")
    g.add_argument("--label-smoothing", "--epsilon", dest="label_smoothing", type=float,
                   default=0.0, help="label smoothing (--epsilon: the original's spelling)")
    g.add_argument("--norm-stats", choices=tuple(NORM_STATS), default="imagenet",
                   help="normalise with ImageNet's mean/std (the original) or the train split's own")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="precision of weights and images")
    if add_args is not None:
        add_args(parser)
    runs.add_common_args(parser, checkpoint_aliases=("--init-from",), datasets=DATASETS,
                         epochs=200, batch_size=64, lr=0.1, wd=1e-4, save_period=10)
    return parser


def parse(framework, models, argv=None, add_args=None):
    """Parse and check the flags (:func:`build_parser`); fills ``args.model`` and
    ``args.lr_steps`` (a list)."""
    parser = build_parser(framework, models, add_args)
    args = runs.parse(parser, argv)
    args.model = args.model or f"attention{args.num_layers}_cifar"
    if args.model not in recipe_models(models):
        parser.error(f"--num-layers {args.num_layers}: no attention{args.num_layers}_cifar is registered")
    if args.mix_up is not None or args.alpha is not None:
        if args.mixup_alpha:
            parser.error("give --mixup-alpha, or the original's --mix-up 1 --alpha A, not both")
        args.mixup_alpha = (1.0 if args.alpha is None else args.alpha) if args.mix_up else 0.0
    del args.mix_up, args.alpha  # one value records the recipe: mixup_alpha
    try:
        args.lr_steps = [int(s) for s in str(args.lr_steps).split(",") if s.strip()]
    except ValueError:
        parser.error(f"--lr-steps must be comma-separated epochs, got {args.lr_steps!r}")
    if not 0 <= args.label_smoothing < 1:
        parser.error(f"--label-smoothing must lie in [0, 1), got {args.label_smoothing}")
    if args.mixup_alpha < 0:
        parser.error(f"--mixup-alpha must be >= 0 (0: off), got {args.mixup_alpha}")
    if args.warmup_epochs >= args.epochs and args.warmup_epochs > 0:
        parser.error("--warmup-epochs must be smaller than --epochs")
    return args


def recipe_transforms(norm_stats="imagenet"):
    """(train, test) transform builders ``(dataset mean, dataset std) -> transform``: the
    original's pad-4 crop of 32 and flip, normalised with ``NORM_STATS[norm_stats]`` or, for
    "dataset", the dataset's own statistics."""
    train, test = runs.cifar_transforms()
    fixed = NORM_STATS[norm_stats]
    if fixed is None:
        return train, test
    return (lambda mean, std: train(*fixed)), (lambda mean, std: test(*fixed))


def lr_at(args):
    """The rate of batch ``batch`` of ``epoch``: gluoncv's schedule at MXNet's update count
    ``num_update = epoch * batches + batch + 1``."""
    def rate(epoch, batch, batches):
        return gluoncv_lr(epoch * batches + batch + 1, base_lr=args.lr,
                          total_iters=args.epochs * batches,
                          warmup_iters=args.warmup_epochs * batches, mode=args.lr_mode,
                          step_iters=[(e - args.warmup_epochs) * batches for e in args.lr_steps],
                          step_factor=args.lr_factor)
    return rate


class Targets:
    """Dense training targets of batch ``index`` of ``epoch``, and the images mixed with
    them: smoothed one-hot, mixed (mixup) before the last 10% of the epochs."""

    def __init__(self, args, num_classes):
        self.num_classes, self.epsilon, self.epochs = num_classes, args.label_smoothing, args.epochs
        self.sampler = MixupSampler(args.mixup_alpha, args.seed) if args.mixup_alpha > 0 else None

    def mixing(self, epoch):
        return self.sampler is not None and epoch < 0.9 * self.epochs

    def __call__(self, images, label_ids, epoch, index):
        dense = labels.smooth_one_hot(label_ids, self.num_classes, self.epsilon, dtype=images.dtype)
        if not self.mixing(epoch):
            return images, dense
        return mixup(images, dense, self.sampler(epoch, index))


class Session:
    """The recipe's half of a session for :func:`common.fit.fit`, written once for both
    frameworks: images in ``--dtype``, dense smoothed (and mixed) targets for training.

    A framework's subclass builds ``model`` with ``kwargs`` (:func:`model_kwargs`) and the
    recipe's initialisation, loads ``--initial-checkpoint`` over it with
    :meth:`start_from_checkpoint`, builds the optimizer, has fit's checkpoint methods, and
    names its steps on numpy arrays: ``train_step(images, targets, lr)`` (one update on dense
    targets) and ``eval_step(images, labels)``, each returning (summed loss, logits)."""

    def __init__(self, args, num_classes, processes=Processes()):
        self.dtype = np.dtype(args.dtype)
        self.targets = Targets(args, num_classes)
        self.kwargs = model_kwargs(num_classes)
        self.started = None  # what start_from_checkpoint logs

    def start_from_checkpoint(self, framework, args):
        """``--initial-checkpoint`` over the initialised ``model``
        (:func:`common.runs.load_initial_checkpoint`)."""
        self.started = runs.load_initial_checkpoint(args, framework, self.model, args.model,
                                                    self.kwargs)

    def train_batch(self, images, labels, lr, epoch, batch):
        images, dense = self.targets(images.astype(self.dtype), labels, epoch, batch)
        loss, logits = self.train_step(images, dense, lr)
        return loss, logits.argmax(1)

    def eval_batch(self, images, labels):
        loss, logits = self.eval_step(images.astype(self.dtype), labels)
        return loss, logits.argmax(1)


def model_kwargs(num_classes):
    """The constructor's arguments of the recipe's model for ``num_classes`` classes."""
    return {"num_classes": num_classes}


def train(framework, args, Session, processes=Processes(), argv=None, board=runs.ScalarWriter):
    """The whole run of a train script in this process of ``processes``
    (:mod:`common.processes`), with the ``args`` parsed from ``argv`` (:func:`parse`): claim
    the run folder (:func:`common.runs.open_run`), build the loaders, the framework's
    ``Session(args, num_classes, processes)`` (``--num-classes``, by default the dataset's),
    write the model card and :func:`common.fit.fit` the session in the run folder.
    ``board(log_dir)`` is the TensorBoard writer (Gluon: mxboard). Returns the best test
    accuracy."""
    log = runs.open_run(args, framework, f"{framework}-{args.model}",
                        f"{framework}_impl.train_attention", Session, argv, main=processes.main,
                        board=board)
    try:
        with runs.reported(args, log):
            train_set, test_set, train_loader, test_loader = runs.build_loaders(
                args, *recipe_transforms(args.norm_stats), processes=processes, log=log)
            session = Session(args, runs.model_classes(args, train_set), processes)
            mixed = sum(map(session.targets.mixing, range(args.epochs)))
            log.info("%s %s on %s (%d train / %d test images), %s, %s", framework, args.model,
                     args.dataset, len(train_set), len(test_set),
                     "resuming" if args.resume else "start",
                     f"mixup in the first {mixed} epochs" if mixed else "no mixup")
            if session.started:
                log.info(session.started)
            if processes.main:
                runs.write_run_card(args.log_dir, framework, args.model, session.kwargs,
                                    train_set, test_loader, f"{framework}_impl.train_attention")
            result = fit(args, log, session, train_loader, test_loader, lr_at(args),
                         reduce=processes.all_reduce, main=processes.main)
            log.info("done: best val_acc %.4f at epoch %d; run folder %s", result.best_acc,
                     result.best_epoch, os.path.abspath(args.log_dir))
    finally:
        log.close()
    return result.best_acc
