"""The SAN training recipe shared by ``pytorch_impl.train_san`` and ``paddle_impl.train_san``
(framework-free): flags and YAML configs, the input-size check, and data loaders that split
every global batch between ``torchrun`` processes.

The recipe is that of hszhao/SAN: SGD (momentum 0.9, weight decay 1e-4), learning rate 0.1
with a cosine decay per epoch, label smoothing 0.1, random-resized-crop 224 and flip, resize
256 and centre crop for validation; at 32x32 (digits, CIFAR) the last two stages see 2x2
and 1x1 maps, where the reflection padding of a 7x7 window is undefined, so the default
kernels there are (3, 3, 3, 3, 1).
"""
import argparse

import numpy as np
import yaml

from . import transforms
from .data import get_dataset
from .loader import BatchLoader
from .runs import add_common_args, cifar_transforms, parse

SAN_MODELS = tuple(f"san{d}_{t}" for d in (10, 15, 19) for t in ("pairwise", "patchwise"))
SMALL_IMAGE_KERNELS = (3, 3, 3, 3, 1)
IMAGE_FOLDER_DATASETS = ("imagenet", "tiny_imagenet")
CONFIG_KEYS = ("model", "layers", "kernels", "dataset", "image_size", "epochs", "batch_size", "lr",
               "momentum", "wd", "label_smoothing", "workers")


def build_parser(description):
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a YAML recipe (pytorch_impl/configs/*.yaml); flags "
                                         "given on the command line override it")
    parser.add_argument("--model", default="san10_pairwise", choices=SAN_MODELS)
    parser.add_argument("--layers", type=int, nargs=5, help="blocks per stage (default: the model's)")
    parser.add_argument("--kernels", type=int, nargs=5,
                        help="attention footprint per stage (default: 3 7 7 7 7; 3 3 3 3 1 at 32x32)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="training crop of image-folder datasets (default 224)")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    add_common_args(parser, lr=0.1, batch_size=64, wd=1e-4)
    return parser


def parse_args(description, argv=None):
    parser = build_parser(description)
    first, _ = parser.parse_known_args(argv)
    if first.config:
        try:
            with open(first.config) as f:
                config = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            parser.error(f"--config {first.config}: {e}")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            parser.error(f"--config {first.config}: unknown keys {', '.join(unknown)}")
        parser.set_defaults(**config)
    args = parse(parser, argv)
    if args.dataset in IMAGE_FOLDER_DATASETS:
        args.image_size = args.image_size or 224
    elif args.image_size not in (None, 32):
        parser.error(f"--image-size applies to image folders; {args.dataset} images are 32x32")
    else:
        args.image_size = 32
    args.kernels = tuple(args.kernels or (SMALL_IMAGE_KERNELS if args.image_size <= 32 else (3, 7, 7, 7, 7)))
    problem = input_size_problem(args.kernels, args.image_size)
    if problem:
        parser.error(problem)
    if args.label_smoothing < 0 or args.label_smoothing >= 1:
        parser.error("--label-smoothing must lie in [0, 1)")
    return args


def input_size_problem(kernels, size):
    """Why a SAN with these kernels cannot run on ``size`` x ``size`` images (or None):
    stage i sees ``size / 2**(i+1)`` pixels and its reflection padding must be smaller."""
    for stage, kernel in enumerate(kernels):
        side = size // 2 ** (stage + 1)
        if side < 1 or kernel // 2 >= side:
            return (f"kernels {' '.join(map(str, kernels))} do not fit {size}x{size} images: stage "
                    f"{stage} sees {side}x{side} maps, too small for a {kernel}x{kernel} window with "
                    f"reflection padding (use --kernels, e.g. 3 3 3 3 1 at 32x32)")
    return None


class ShardLoader(BatchLoader):
    """Process ``rank``'s share of every global batch of a :class:`BatchLoader` with
    ``world`` processes: global batch b holds the same images as in one process, split in
    ``world`` consecutive parts, part ``rank`` here."""

    def __init__(self, dataset, global_batch, transform, rank, world, **kw):
        super().__init__(dataset, global_batch // world, transform, **kw)
        self.global_batch, self.rank, self.world = global_batch, rank, world

    def __len__(self):
        n = len(self.dataset)
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def order(self, epoch):
        order = super().order(epoch)
        padded = len(self) * self.global_batch
        if padded > len(order):  # last short batch: repeat the start so every rank has work
            order = np.concatenate([order, order[:padded - len(order)]])
        batches = order[:padded].reshape(len(self), self.world, self.batch_size)
        return batches[:, self.rank].reshape(-1)


def build_loaders(args, rank, world):
    train = get_dataset(args.dataset, "train", args.data_dir, args.download)
    test = get_dataset(args.dataset, "test", args.data_dir)
    if args.dataset in IMAGE_FOLDER_DATASETS:
        size = args.image_size
        train_tf = transforms.imagenet_train(train.mean, train.std, size)
        test_tf = transforms.imagenet_test(train.mean, train.std, size, round(size * 256 / 224))
    else:
        make_train, make_test = cifar_transforms()
        train_tf, test_tf = make_train(train.mean, train.std), make_test(train.mean, train.std)
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must be a multiple of the {world} processes")
    train_loader = ShardLoader(train, args.batch_size, train_tf, rank, world, shuffle=True,
                               drop_last=True, seed=args.seed, workers=args.workers)
    test_loader = ShardLoader(test, args.batch_size, test_tf, rank, world, seed=args.seed,
                              workers=args.workers)
    if len(train_loader) == 0:
        raise SystemExit(f"{args.dataset} has {len(train)} training images, fewer than one batch "
                         f"of {args.batch_size}")
    return train, test, train_loader, test_loader


