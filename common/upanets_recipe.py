"""The UPANets training recipe (reference ``main.py``), shared by the three train scripts:
SGD lr 0.1, momentum 0.9, weight decay 5e-4 on every parameter, cosine annealing over the
epochs, batch 100, cross-entropy; CIFAR: pad-4 random crop of 32 and flip; Tiny ImageNet:
pad-8 crop of 64 and flip; each normalised with its dataset's recipe statistics
(CIFAR (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010), ImageNet's for Tiny ImageNet).
"""
import argparse
import os

from . import runs
from .fit import fit
from .processes import Processes
from .schedules import cosine_lr

MOMENTUM = 0.9
MODELS = ("upanets16", "upanets32", "upanets64")
DATASETS = ("digits", "cifar10", "cifar100", "tiny_imagenet")


def build_parser(framework, add_args=None):
    """The recipe's flags; ``add_args(parser)`` adds a framework's own."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {framework}_impl.train_upanets",
        description=f"Train UPANets ({framework}) with the reference recipe.",
        formatter_class=runs.HelpFormatter)
    g = parser.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default=None,
                   help="registry name (default upanets<filters>)")
    g.add_argument("--filters", type=int, choices=(16, 32, 64), default=16,
                   help="base width f when --model is not given")
    g.add_argument("--blocks", type=int, default=1, help="dense blocks per stage / 4")
    if add_args is not None:
        add_args(parser)
    return runs.add_common_args(parser, datasets=DATASETS, epochs=1, batch_size=100, lr=0.1,
                                wd=5e-4, save_period=10)


def parse(framework, argv=None, add_args=None):
    """Parsed arguments, with ``model``, ``img_size`` and the transforms filled in."""
    parser = build_parser(framework, add_args)
    args = runs.parse(parser, argv)
    if args.model is not None and args.model != f"upanets{args.filters}" and args.filters != 16:
        parser.error(f"--model {args.model} and --filters {args.filters} disagree; give one")
    args.model = args.model or f"upanets{args.filters}"
    if args.blocks < 1:
        parser.error("--blocks must be at least 1")
    args.img_size, pad = (64, 8) if args.dataset == "tiny_imagenet" else (32, 4)
    args.transforms = runs.cifar_transforms(args.img_size, pad)
    return args


def lr_at(args):
    """The learning rate of every batch of an epoch: cosine annealing from ``args.lr`` over
    the run's epochs."""
    return lambda epoch, batch, batches: cosine_lr(epoch, args.lr, args.epochs)


def train(framework, args, create_model, Session, seed, count_parameters, processes=Processes(),
          argv=None, board=runs.ScalarWriter):
    """The whole run of a UPANets train script in this process of ``processes``
    (:mod:`common.processes`), with the ``args`` parsed from ``argv`` (:func:`parse`): claim
    the run folder (:func:`common.runs.open_run`), seed the framework (``seed(n)``), build the
    loaders and ``create_model(name, **kwargs)`` (the recipe's initialisation;
    ``--num-classes``, by default the dataset's), load ``--initial-checkpoint`` over it, write
    the model card, and :func:`common.fit.fit` the framework's ``Session(model, args,
    processes)`` in the run folder. ``count_parameters(model)`` gives the trainable count for
    the log; ``board(log_dir)`` is the TensorBoard writer (Gluon: mxboard). Returns the best
    test accuracy."""
    log = runs.open_run(args, framework, f"{framework}-{args.model}",
                        f"{framework}_impl.train_upanets", Session, argv, main=processes.main,
                        board=board)
    try:
        with runs.reported(args, log):
            seed(args.seed)
            train_set, test, train_loader, test_loader = runs.build_loaders(
                args, *args.transforms, processes=processes, log=log)
            kwargs = dict(num_classes=runs.model_classes(args, train_set), img_size=args.img_size,
                          blocks=args.blocks)
            model = create_model(args.model, **kwargs)
            started = runs.load_initial_checkpoint(args, framework, model, args.model, kwargs)
            log.info("%s on %s (%d train, %d test images), %d parameters, run folder %s",
                     args.model, args.dataset, len(train_set), len(test), count_parameters(model),
                     os.path.abspath(args.log_dir))
            if started:
                log.info(started)
            if processes.main:
                runs.write_run_card(args.log_dir, framework, args.model, kwargs, train_set,
                                    test_loader, f"{framework}_impl.train_upanets")
            result = fit(args, log, Session(model, args, processes), train_loader, test_loader,
                         lr_at(args), reduce=processes.all_reduce, main=processes.main)
            log.info("best test accuracy %.4f", result.best_acc)
    finally:
        log.close()
    return result.best_acc
