"""The AlexNet / AlexNet-SimAM training recipe of the original PaddlePaddle experiment, shared
by the Paddle script and its PyTorch port: resize 130, colour jitter, random resized crop 128
(scale 0.6-1), flip, rotation 20, ImageNet mean/std (test: resize 128); batch 128 dropping the
last short batch; cross entropy with label smoothing 0.1; Adam lr 5e-4 with (coupled L2)
weight decay 1e-5; cosine decay stepped every iteration over all epochs; 50 epochs; seed 42;
optional mixup.

A script gives :func:`train` its parsed arguments, ``create_model`` and its framework's
subclass of :class:`Session`.
"""
import argparse
import os

from . import plots, runs, transforms
from .data import IMAGENET_MEAN, IMAGENET_STD
from .fit import evaluate, fit
from .labels import smooth_uniform
from .mixup import MixupSampler, mixup
from .processes import Processes
from .schedules import cosine_lr

MODELS = ("alexnet", "alexnet_simam")


def build_parser(description, add_args=None):
    """The recipe's flags; ``add_args(parser)`` adds a framework's own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=runs.HelpFormatter)
    parser.add_argument("--model", default="alexnet_simam", choices=MODELS, help="registry name")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    parser.add_argument("--mixup-alpha", type=float, default=0.0,
                        help="mix each batch with its reverse, lambda ~ Beta(a, a); 0 = off")
    parser.add_argument("--grid", type=int, default=18,
                        help="test images in predictions.png (0: no predictions.png)")
    # model-last is written every epoch; further copies only on request
    runs.add_common_args(parser, epochs=50, batch_size=128, lr=5e-4, wd=1e-5, seed=42,
                         save_period=0)
    if add_args is not None:
        add_args(parser)
    return parser


def parse_args(description, argv=None, add_args=None):
    parser = build_parser(description, add_args)
    args = runs.parse(parser, argv)
    if not 0 <= args.label_smoothing < 1:
        parser.error("--label-smoothing must lie in [0, 1)")
    if args.mixup_alpha < 0:
        parser.error("--mixup-alpha must be >= 0")
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


class Session:
    """The recipe's session for :func:`common.fit.fit`, written once for both frameworks:
    dropout reseeded before the first batch of every epoch (a resumed run draws the same
    masks; each process of a multi-process run its own), dense targets smoothed by
    ``--label-smoothing`` and, for training, mixed up with the reversed batch (images too)
    when ``--mixup-alpha`` > 0 (in several processes, each process's share with its reverse).

    A framework's subclass names its primitives, ``seed(n)``, ``tensor(array)`` and
    ``no_grad()`` (and ``numpy(tensor)`` and ``set_mode(train)`` where Paddle's and torch's,
    the defaults, do not fit), and its script's ``make_optimizer(model, lr, wd)``,
    ``train_step(model, optimizer, images, targets, lr) -> (loss, logits)`` and
    ``loss(logits, targets)``, and has fit's checkpoint methods."""

    def __init__(self, model, args, num_classes, processes=Processes()):
        self.model, self.args, self.num_classes = model, args, num_classes
        self.optimizer = self.make_optimizer(model, args.lr, args.wd)
        self.sampler = MixupSampler(args.mixup_alpha, args.seed) if args.mixup_alpha > 0 else None
        self.rank, self.world = processes.rank, processes.world

    @staticmethod
    def numpy(tensor):
        return tensor.numpy()

    def set_mode(self, train):
        """The model's train or eval mode (dropout on or off)."""
        if train:
            self.model.train()
        else:
            self.model.eval()

    def targets(self, labels):
        return smooth_uniform(labels, self.num_classes, self.args.label_smoothing)

    def train_batch(self, images, labels, lr, epoch, batch):
        if batch == 0:
            # one stream per (epoch, process): the processes' shares draw different masks
            self.seed((self.args.seed * 100003 + epoch) * self.world + self.rank)
        targets = self.targets(labels)
        if self.sampler is not None:
            images, targets = mixup(images, targets, self.sampler(epoch, batch))
        self.set_mode(True)
        loss, logits = self.train_step(self.model, self.optimizer, self.tensor(images),
                                       self.tensor(targets), lr)
        return float(self.numpy(loss)) * len(labels), self.numpy(logits).argmax(1)

    def eval_batch(self, images, labels):
        self.set_mode(False)
        with self.no_grad():
            logits = self.model(self.tensor(images))
            loss = self.loss(logits, self.tensor(self.targets(labels)))
        return float(self.numpy(loss)) * len(labels), self.numpy(logits).argmax(1)


def train(framework, args, create_model, Session, processes=Processes(), argv=None):
    """The whole run of a train script with the ``args`` parsed from ``argv`` and its
    framework's ``Session`` (a subclass of :class:`Session`): claim the run folder
    (:func:`common.runs.open_run`), build ``create_model(name, **kwargs)`` (the recipe's
    initialisation, seeded; ``--num-classes``, by default the dataset's), load
    ``--initial-checkpoint`` over it, write the model card, train (or resume) in the run
    folder as this process of ``processes`` (:mod:`common.processes`), then :func:`finish`.
    Returns the best test accuracy."""
    log = runs.open_run(args, framework, f"{framework}-{args.model}",
                        f"{framework}_impl.train_alexnet", Session, argv, main=processes.main)
    try:
        with runs.reported(args, log):
            Session.seed(args.seed)
            train_set, test, train_loader, test_loader = runs.build_loaders(
                args, *recipe_transforms(), processes=processes, log=log)
            kwargs = {"num_classes": runs.model_classes(args, train_set)}
            model = create_model(args.model, **kwargs)
            started = runs.load_initial_checkpoint(args, framework, model, args.model, kwargs)
            session = Session(model, args, kwargs["num_classes"], processes)
            log.info("%s %s on %s: %d train / %d test images, %d classes", framework, args.model,
                     args.dataset, len(train_set), len(test), train_set.num_classes)
            if started:
                log.info(started)
            if processes.main:
                runs.write_run_card(args.log_dir, framework, args.model, kwargs, train_set,
                                    test_loader, f"{framework}_impl.train_alexnet")
            result = fit(args, log, session, train_loader, test_loader, lr_at(args),
                         reduce=processes.all_reduce, main=processes.main)
            # a resumed run that had no epoch left evaluates what it ended with
            last = result.last or evaluate(session, test_loader, args.max_batches,
                                           reduce=processes.all_reduce)
            if processes.main:
                finish(log, args, test, last, result.best_acc)
    finally:
        log.close()
    return result.best_acc


def finish(log, args, test, last, best_acc):
    """The prediction grid and inference throughput (the seconds the final evaluation spent
    in the session's ``eval_batch``) at the end of a run."""
    k = min(args.grid, len(last.predictions))
    if k > 0:
        plots.prediction_grid([test.images[i] for i in range(k)], last.predictions[:k],
                              test.labels[:k], test.classes, os.path.join(log.dir, "predictions.png"))
    log.info("final val acc %.4f, best %.4f; inference %.1f images/s (batch %d, forward and loss)",
             last.acc, best_acc, len(last.predictions) / last.step_s, args.batch_size)
