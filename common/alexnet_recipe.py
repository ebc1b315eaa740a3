"""The AlexNet / AlexNet-SimAM training recipe of the original PaddlePaddle experiment, shared
by the Paddle script and its PyTorch port: resize 130, colour jitter, random resized crop 128
(scale 0.6-1), flip, rotation 20, ImageNet mean/std (test: resize 128); batch 128 dropping the
last short batch; cross entropy with label smoothing 0.1; Adam lr 5e-4 with (coupled L2)
weight decay 1e-5; cosine decay stepped every iteration over all epochs; 50 epochs; seed 42;
optional mixup; dropout reseeded every epoch, so that a resumed run draws the same masks.

A script gives :func:`train` its parsed arguments, its framework's seeding function,
``create_model`` and a *session* class (see :mod:`common.fit`) built as
``Session(model, args, num_classes)``.
"""
import argparse
import os

from . import plots, runs, transforms
from .data import IMAGENET_MEAN, IMAGENET_STD
from .fit import check_resume, evaluate, fit
from .labels import smooth_uniform
from .mixup import MixupSampler, mixup
from .schedules import cosine_lr

MODELS = ("alexnet", "alexnet_simam")


def build_parser(description):
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="alexnet_simam", choices=MODELS)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--mixup-alpha", type=float, default=0.0,
                        help="mix each batch with its reverse, lambda ~ Beta(a, a); 0 = off")
    parser.add_argument("--grid", type=int, default=18, help="test images in predictions.png")
    runs.add_common_args(parser, epochs=50, batch_size=128, lr=5e-4, wd=1e-5, seed=42)
    return parser


def parse_args(description, argv=None):
    parser = build_parser(description)
    args = runs.parse(parser, argv)
    if not 0 <= args.label_smoothing < 1:
        parser.error("--label-smoothing must lie in [0, 1)")
    if args.mixup_alpha < 0:
        parser.error("--mixup-alpha must be >= 0")
    if args.max_batches is not None and args.max_batches < 1:
        parser.error("--max-batches must be at least 1")
    return args


def recipe_transforms():
    """(train, test) builders of the 128x128 recipe; it normalises with ImageNet statistics
    whatever the dataset."""
    return (lambda mean, std: transforms.alexnet_train(IMAGENET_MEAN, IMAGENET_STD),
            lambda mean, std: transforms.alexnet_test(IMAGENET_MEAN, IMAGENET_STD))


def lr_at(args):
    """The rate of batch ``b`` of ``epoch``: cosine decay from ``args.lr`` over every
    iteration of the run."""
    return lambda epoch, b, batches: cosine_lr(epoch * batches + b, args.lr, args.epochs * batches)


def dropout_seed(args, epoch):
    """The framework seed set before an epoch's first batch."""
    return args.seed * 100003 + epoch


class Targets:
    """The recipe's dense targets: labels smoothed by ``args.label_smoothing``; for training,
    mixed up with their reversed batch (and so are the images) when ``args.mixup_alpha > 0``."""

    def __init__(self, args, num_classes):
        self.num_classes, self.eps = num_classes, args.label_smoothing
        self.sampler = MixupSampler(args.mixup_alpha, args.seed) if args.mixup_alpha > 0 else None

    def eval(self, labels):
        return smooth_uniform(labels, self.num_classes, self.eps)

    def train(self, images, labels, epoch, batch):
        """(images, targets) of batch ``batch`` of ``epoch``."""
        targets = self.eval(labels)
        if self.sampler is None:
            return images, targets
        return mixup(images, targets, self.sampler(epoch, batch))


def train(framework, args, seed, create_model, Session):
    """The whole run of a train script with the parsed ``args``: train (or resume) in the run
    folder, then :func:`finish`. Returns the best test accuracy."""
    name = f"{framework}-{args.model}"
    log_dir = runs.default_log_dir(args, name)
    if args.resume:
        check_resume(log_dir, Session)  # fail before loading data
    seed(args.seed)
    train_set, test, train_loader, test_loader = runs.build_loaders(args, *recipe_transforms())
    session = Session(create_model(args.model, num_classes=train_set.num_classes), args,
                      train_set.num_classes)
    log = runs.RunLog(log_dir, name, resume=args.resume)
    try:
        log.info("%s %s on %s: %d train / %d test images, %d classes; %s", framework, args.model,
                 args.dataset, len(train_set), len(test), train_set.num_classes, vars(args))
        result = fit(args, log, session, train_loader, test_loader, lr_at(args))
        # a resumed run that had no epoch left evaluates what it ended with
        last = result.last or evaluate(session, test_loader, args.max_batches)
        finish(log, args, test, last, result.best_acc)
    finally:
        log.close()
    return result.best_acc


def finish(log, args, test, last, best_acc):
    """Learning curves, prediction grid and inference throughput (the seconds the final
    evaluation spent in the session's ``eval_batch``) at the end of a run."""
    plots.learning_curves(log.history(), os.path.join(log.dir, "learning-curves.png"))
    k = min(args.grid, len(last.predictions))
    plots.prediction_grid([test.images[i] for i in range(k)], last.predictions[:k],
                          test.labels[:k], test.classes, os.path.join(log.dir, "predictions.png"))
    log.info("final val acc %.4f, best %.4f; inference %.1f images/s (batch %d, forward and loss)",
             last.acc, best_acc, len(last.predictions) / last.step_s, args.batch_size)
