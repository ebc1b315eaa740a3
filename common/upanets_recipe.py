"""The UPANets training recipe (reference ``main.py``), shared by the three train scripts:
SGD lr 0.1, momentum 0.9, weight decay 5e-4 on every parameter, cosine annealing over the
epochs, batch 100, cross-entropy; CIFAR: pad-4 random crop of 32 and flip; Tiny ImageNet:
pad-8 crop of 64 and flip; each normalised with its dataset's recipe statistics
(CIFAR (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010), ImageNet's for Tiny ImageNet).
"""
import argparse

from . import runs
from .schedules import cosine_lr

MOMENTUM = 0.9
MODELS = ("upanets16", "upanets32", "upanets64")


def build_parser(framework):
    parser = argparse.ArgumentParser(
        prog=f"python -m {framework}_impl.train_upanets",
        description=f"Train UPANets ({framework}) with the reference recipe.")
    g = parser.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default=None,
                   help="registry name (default upanets<filters>)")
    g.add_argument("--filters", type=int, choices=(16, 32, 64), default=16,
                   help="base width f when --model is not given")
    g.add_argument("--blocks", type=int, default=1, help="dense blocks per stage / 4")
    return runs.add_common_args(parser, epochs=1, batch_size=100, lr=0.1, wd=5e-4, save_period=10)


def parse(framework, argv=None):
    """Parsed arguments, with ``model``, ``img_size`` and the transforms filled in."""
    parser = build_parser(framework)
    args = runs.parse(parser, argv)
    if args.model is not None and args.model != f"upanets{args.filters}" and args.filters != 16:
        parser.error(f"--model {args.model} and --filters {args.filters} disagree; give one")
    args.model = args.model or f"upanets{args.filters}"
    if args.blocks < 1:
        parser.error("--blocks must be at least 1")
    if args.dataset == "imagenet":
        parser.error("UPANets' recipes cover digits, cifar10, cifar100 and tiny_imagenet")
    args.img_size, pad = (64, 8) if args.dataset == "tiny_imagenet" else (32, 4)
    args.transforms = runs.cifar_transforms(args.img_size, pad)
    return args


def lr_at(args):
    """The learning rate of every batch of an epoch: cosine annealing from ``args.lr`` over
    the run's epochs."""
    return lambda epoch, batch, batches: cosine_lr(epoch, args.lr, args.epochs)
