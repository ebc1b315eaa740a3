"""The SAN training recipe shared by ``pytorch_impl.train_san`` and ``paddle_impl.train_san``
(framework-free): flags and YAML configs, the input-size check, the session written once
for both frameworks, and the whole run of a script (:func:`train`, on
:func:`common.fit.fit`; in several processes: :mod:`common.processes`).

The recipe is that of hszhao/SAN: SGD (momentum 0.9, weight decay 1e-4), learning rate 0.1
with a cosine decay per epoch, label smoothing 0.1, random-resized-crop 224 and flip, resize
256 and centre crop for validation, top-1 and top-5 accuracy; at 32x32 (digits, CIFAR) the
last two stages see 2x2 and 1x1 maps, where the reflection padding of a 7x7 window is
undefined, so the default kernels there are (3, 3, 3, 3, 1).
"""
import argparse
import math
import numpy as np
import yaml

from . import runs, transforms
from .fit import fit
from .labels import one_hot, smooth_uniform
from .processes import Processes
from .schedules import cosine_lr

SAN_MODELS = tuple(f"san{d}_{t}" for d in (10, 15, 19) for t in ("pairwise", "patchwise"))
SMALL_IMAGE_KERNELS = (3, 3, 3, 3, 1)
IMAGE_FOLDER_DATASETS = ("imagenet", "tiny_imagenet")
CONFIG_KEYS = ("model", "layers", "kernels", "dataset", "image_size", "epochs", "batch_size", "lr",
               "momentum", "wd", "label_smoothing", "workers")


def build_parser(description, add_args=None):
    """The recipe's flags; ``add_args(parser)`` adds a framework's own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=runs.HelpFormatter)
    parser.add_argument("--config", help="a YAML recipe (pytorch_impl/configs/*.yaml); flags "
                                         "given on the command line override it")
    parser.add_argument("--model", default="san10_pairwise", choices=SAN_MODELS, help="registry name")
    parser.add_argument("--layers", type=int, nargs=5, help="blocks per stage (default: the model's)")
    parser.add_argument("--kernels", type=int, nargs=5,
                        help="attention footprint per stage (default: 3 7 7 7 7; 3 3 3 3 1 at 32x32)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="training crop of image-folder datasets (default 224)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing")
    # model-last is written every epoch; further copies only on request
    runs.add_common_args(parser, lr=0.1, batch_size=64, wd=1e-4, save_period=0)
    if add_args is not None:
        add_args(parser)
    return parser


def parse_args(description, argv=None, add_args=None):
    parser = build_parser(description, add_args)
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
    args = runs.parse(parser, argv)
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


def recipe_transforms(args):
    """(train, test) transform builders: random-resized-crop and flip / resize and centre
    crop on image folders, the CIFAR recipe at 32x32."""
    if args.dataset not in IMAGE_FOLDER_DATASETS:
        return runs.cifar_transforms()
    size = args.image_size
    return (lambda mean, std: transforms.imagenet_train(mean, std, size),
            lambda mean, std: transforms.imagenet_test(mean, std, size, round(size * 256 / 224)))


def build_loaders(args, processes, log=None):
    """(train set, test set, train loader, test loader) of this process (see
    :func:`common.runs.build_loaders`)."""
    return runs.build_loaders(args, *recipe_transforms(args), processes=processes, log=log)


def lr_at(args):
    """The rate of every batch of an epoch: cosine decay from ``args.lr`` over the epochs."""
    return lambda epoch, batch, batches: cosine_lr(epoch, args.lr, args.epochs)


def ranked_classes(logits, k=5):
    """The ``k`` most likely classes of every row of ``logits``, best first (N x k)."""
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


class Session:
    """SAN's recipe as a :func:`common.fit.fit` session, written once for both frameworks:
    a training step of the recipe's SGD on the cross-entropy against targets smoothed by
    ``--label-smoothing``, an evaluation by the plain cross-entropy, and the five best
    classes of every image as predictions (fit reports top-1 and top-5 accuracy). A training
    loss that is not finite ends the run with a clear message.

    A framework's subclass names ``tensor(array)`` (on its device), ``numpy(tensor)``,
    ``no_grad()``, ``make_optimizer(model, args)``, ``train_step(model, optimizer, images,
    targets, lr) -> (loss, logits)`` and ``loss(logits, targets)`` (batch mean of the
    cross-entropy against dense targets), has fit's checkpoint methods, and may override
    :meth:`place`. ``model`` holds the weights (checkpoints), ``net`` runs them."""

    def __init__(self, model, args, num_classes, processes):
        self.model, self.args, self.num_classes = model, args, num_classes
        self.net = self.place(model, processes)
        self.optimizer = self.make_optimizer(model, args)

    def place(self, model, processes):
        """The module that runs ``model``: itself here; a framework moves it to
        ``processes.device`` and wraps it for data parallelism when ``processes.world`` > 1."""
        return model

    def train_batch(self, images, labels, lr, epoch, batch):
        targets = smooth_uniform(labels, self.num_classes, self.args.label_smoothing)
        self.net.train()
        loss, logits = self.train_step(self.net, self.optimizer, self.tensor(images),
                                       self.tensor(targets), lr)
        loss = float(loss)
        if not math.isfinite(loss):
            raise SystemExit(f"epoch {epoch}, batch {batch}: the loss is not finite (lower --lr?)")
        return loss * len(labels), ranked_classes(self.numpy(logits))

    def eval_batch(self, images, labels):
        self.net.eval()
        with self.no_grad():
            logits = self.net(self.tensor(images))
            loss = self.loss(logits, self.tensor(one_hot(labels, self.num_classes)))
        return float(loss) * len(labels), ranked_classes(self.numpy(logits))


def train(framework, args, create_model, Session, seed, count_parameters, processes=Processes(),
          argv=None):
    """The whole run of a SAN train script in this process of ``processes``, with the
    ``args`` parsed from ``argv``: claim the run folder (:func:`common.runs.open_run`; the
    main process, rank 0, alone writes it, the model card first), seed the framework
    (``seed(n)``), build this process's loaders and ``create_model(name, **kwargs)``
    (``--num-classes``, by default the dataset's), load ``--initial-checkpoint`` over it
    (every process), and :func:`common.fit.fit` the framework's ``Session`` (a subclass of
    :class:`Session`). ``count_parameters(model)`` gives the count for the log. Returns the
    best accuracy."""
    main = processes.main
    log = runs.open_run(args, framework, f"{framework}-{args.model}", f"{framework}_impl.train_san",
                        Session, argv, main=main)
    try:
        with runs.reported(args, log):
            seed(args.seed)
            train_set, test, train_loader, test_loader = build_loaders(args, processes, log)
            kwargs = dict(num_classes=runs.model_classes(args, train_set), layers=args.layers,
                          kernels=args.kernels)
            model = create_model(args.model, **kwargs)
            started = runs.load_initial_checkpoint(args, framework, model, args.model, kwargs)
            session = Session(model, args, kwargs["num_classes"], processes)
            log.info("%s %s on %s (%d train / %d test images, %d classes), %d process(es) on %s, "
                     "%d parameters, run folder %s", framework, args.model, args.dataset,
                     len(train_set), len(test), train_set.num_classes, processes.world,
                     processes.device, count_parameters(model), args.log_dir)
            if started:
                log.info(started)
            if main:
                runs.write_run_card(args.log_dir, framework, args.model, kwargs, train_set,
                                    test_loader, f"{framework}_impl.train_san")
            result = fit(args, log, session, train_loader, test_loader, lr_at(args),
                         reduce=processes.all_reduce, main=main)
            log.info("best val_acc %.4f at epoch %d", result.best_acc, result.best_epoch)
    finally:
        log.close()
    return result.best_acc
