"""What every train script shares, whatever its framework: the common flags, the data
loaders they describe, a run folder with a log file, per-epoch metrics and TensorBoard
scalars, and progress bars.

A run folder (``--log-dir``) holds ``train.log`` (what the console shows), ``metrics.jsonl``
(one JSON object per epoch, easy to plot or compare), TensorBoard event files, the model
card ``model.json`` (:func:`write_run_card`) and the checkpoints the script writes
(``model-last.*`` every epoch, ``model-best.*`` at the best validation accuracy,
``train-state.*`` for ``--resume``), each written atomically (:mod:`common.checkpoint`).

Fine-tuning: ``--initial-checkpoint`` starts the model from a checkpoint of any format
written by any framework (:func:`load_initial_checkpoint`), and ``--num-classes`` sets the
classes the model predicts (:func:`model_classes`); when they differ from the checkpoint's,
only the classifier keeps the recipe's initialisation.
"""
import importlib
import json
import logging
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from . import specs, transforms
from .checkpoint import CheckpointError, atomic_open
from .convert import ConversionError
from .data import DATASETS, DEFAULT_DATASET, get_dataset
from .loader import BatchLoader


def add_common_args(parser, checkpoint_aliases=(), **defaults):
    """The flags every train script has; ``defaults`` overrides a recipe's values
    (e.g. ``lr=0.1, batch_size=128``); ``checkpoint_aliases`` are further spellings of
    ``--initial-checkpoint`` (the Residual Attention scripts' ``--init-from``)."""
    d = dict(dataset=DEFAULT_DATASET, epochs=1, batch_size=64, lr=0.1, wd=1e-4, seed=0, workers=2,
             log_dir=None, save_period=1)
    d.update(defaults)
    g = parser.add_argument_group("data and run")
    g.add_argument("--dataset", default=d["dataset"], choices=DATASETS,
                   help="'digits' is the embedded default; the others read --data-dir")
    g.add_argument("--data-dir", default=None, help="folder of the dataset's official files")
    g.add_argument("--download", action="store_true", help="download CIFAR if it is missing")
    g.add_argument("--epochs", type=int, default=d["epochs"])
    g.add_argument("--batch-size", type=int, default=d["batch_size"])
    g.add_argument("--lr", type=float, default=d["lr"], help="base learning rate")
    g.add_argument("--wd", type=float, default=d["wd"], help="weight decay")
    g.add_argument("--seed", type=int, default=d["seed"])
    g.add_argument("--workers", type=int, default=d["workers"], help="threads preparing batches")
    g.add_argument("--log-dir", default=d["log_dir"], help="run folder (default runs/<name>)")
    g.add_argument("--save-period", type=int, default=d["save_period"],
                   help="also keep a checkpoint every N epochs (0: never)")
    g.add_argument("--resume", action="store_true", help="continue the run in --log-dir")
    g.add_argument("--max-batches", type=int, default=None,
                   help="stop each epoch after N batches (smoke runs)")
    g.add_argument("--initial-checkpoint", *checkpoint_aliases, dest="initial_checkpoint",
                   default=None, metavar="PATH",
                   help="start from these weights (.params, .pdparams, .pth, .pt or .safetensors, "
                        "written by any framework) instead of the recipe's initialisation; "
                        "not read with --resume")
    g.add_argument("--num-classes", type=int, default=None,
                   help="classes the model predicts (default: the dataset's); when it differs "
                        "from --initial-checkpoint's, only the classifier is re-initialised")
    return parser


def build_loaders(args, train_transform, test_transform, drop_last=True, loader=BatchLoader):
    """(train dataset, test dataset, train loader, test loader) for the parsed ``args``.
    ``*_transform(mean, std)`` build the augmentation from the dataset's statistics;
    ``loader`` is the :class:`BatchLoader` class (or a subclass) that batches them."""
    train = get_dataset(args.dataset, "train", args.data_dir, args.download)
    test = get_dataset(args.dataset, "test", args.data_dir)
    train_loader = loader(train, args.batch_size, train_transform(train.mean, train.std),
                          shuffle=True, drop_last=drop_last, seed=args.seed, workers=args.workers)
    test_loader = loader(test, args.batch_size, test_transform(train.mean, train.std),
                         seed=args.seed, workers=args.workers)
    return train, test, train_loader, test_loader


def cifar_transforms(size=32, pad=4):
    """(train, test) transform builders of the CIFAR / Tiny ImageNet recipes."""
    return (lambda mean, std: transforms.cifar_train(mean, std, size, pad)), transforms.plain


class RunLog:
    """Console + ``train.log`` logging, ``metrics.jsonl`` and TensorBoard scalars."""

    def __init__(self, log_dir, name, resume=False, tensorboard=True):
        self.dir = log_dir
        os.makedirs(log_dir, exist_ok=True)
        self.metrics_path = os.path.join(log_dir, "metrics.jsonl")
        if not resume and os.path.exists(self.metrics_path):
            os.remove(self.metrics_path)
        self.logger = logging.getLogger(f"attention_ports.{name}.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        for handler in (logging.StreamHandler(sys.stdout),
                        logging.FileHandler(os.path.join(log_dir, "train.log"))):
            handler.setFormatter(fmt)
            self.logger.addHandler(handler)
        self.board = ScalarWriter(log_dir) if tensorboard else None

    def info(self, message, *args):
        self.logger.info(message, *args)

    def epoch(self, epoch, **metrics):
        """Record one epoch's metrics: a console line, a JSON line and scalars."""
        record = {"epoch": epoch, "time": time.time(), **metrics}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.info("[epoch %d] %s", epoch, "  ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
        if self.board is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.board.scalar(k.replace("_", "/", 1), v, epoch)

    def drop_epochs(self, first):
        """Forget the metrics of epochs ``first`` and later: a run resumed from epoch ``first``
        records them again (they exist when it stopped between logging and saving its state)."""
        history = self.history()
        kept = [r for r in history if r["epoch"] < first]
        if len(kept) < len(history):
            with atomic_open(self.metrics_path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)

    def history(self):
        """The metrics recorded so far (this run and, when resumed, the earlier ones)."""
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def close(self):
        if self.board is not None:
            self.board.close()
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)


class ScalarWriter:
    """TensorBoard scalars written with the ``tensorboard`` package alone (no torch or
    TensorFlow), for the PyTorch and Paddle scripts. The Gluon scripts use mxboard, whose
    protobuf definitions clash with tensorboard's in one process: never both at once."""

    def __init__(self, log_dir):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        self._writer = EventFileWriter(log_dir)

    def scalar(self, tag, value, step):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def close(self):
        self._writer.close()


def progress(iterable, total, desc):
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal and
    ``ATTENTION_PORTS_PROGRESS`` is not set)."""
    disable = not (sys.stderr.isatty() or os.environ.get("ATTENTION_PORTS_PROGRESS"))
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=disable)


def default_log_dir(args, name):
    return args.log_dir or os.path.join("runs", f"{name}-{args.dataset}")


def parse(parser, argv=None):
    """Parse ``argv`` and reject flag combinations that cannot work, with a clear message."""
    args = parser.parse_args(argv)
    for flag, least in (("epochs", 1), ("batch_size", 1), ("save_period", 0)):
        if getattr(args, flag, least) < least:
            parser.error(f"--{flag.replace('_', '-')} must be at least {least}")
    if args.dataset != "digits" and args.data_dir is None:
        parser.error(f"--dataset {args.dataset} needs --data-dir (the folder of its official files)")
    if args.num_classes is not None and args.num_classes < 1:
        parser.error("--num-classes must be at least 1")
    return args


def model_classes(args, dataset):
    """The number of classes the model predicts: ``--num-classes``, by default the
    dataset's. Fewer than the dataset's labels could not be trained: one line on stderr and
    exit status 2, as a bad flag."""
    classes = dataset.num_classes if args.num_classes is None else args.num_classes
    if classes < dataset.num_classes:
        print(f"error: --num-classes {classes} is smaller than the {dataset.num_classes} classes "
              f"of {dataset.name}", file=sys.stderr)
        raise SystemExit(2)
    return classes


def one_line(message, width=400):
    """A (multi-line) error message on one line: its lines joined by '; ', cut at ``width``
    characters (a list of mismatched tensors says how many there are first)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    line = lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")
    return line if len(line) <= width else line[:width - 4] + " ..."


def load_initial_checkpoint(args, framework, model, name, kwargs):
    """Put ``--initial-checkpoint``'s weights into ``model``, registered model ``name`` that
    the recipe built and initialised in ``framework`` with ``kwargs`` (``num_classes``
    included), through the framework's ``load_checkpoint``: every tensor, or every tensor but
    the classifier's when the checkpoint has another number of classes. Returns the line the
    run logs about it (None without the flag). With ``--resume`` the checkpoint is not read:
    the run continues from its own weights. A checkpoint that cannot be read or does not fit
    the model ends the run with one line: ``error: --initial-checkpoint: ...``.

    PyTorch and Paddle models come back in eval mode: every session sets the training mode
    at each step."""
    path = args.initial_checkpoint
    if not path:
        return None
    if args.resume:
        return f"--resume: continuing from the run's own weights; --initial-checkpoint {path} is not read"
    load_checkpoint = importlib.import_module(f"{framework}_impl").load_checkpoint
    try:
        left = load_checkpoint(model, name, path, **kwargs)
    except (CheckpointError, ConversionError) as e:
        raise SystemExit(f"error: --initial-checkpoint: {one_line(e)}") from None
    if left:
        return (f"started from {path}; {', '.join(left)} re-initialised for "
                f"{kwargs['num_classes']} classes")
    return f"started from {path}"


def write_run_card(log_dir, framework, name, kwargs, train_set, test_loader, recipe):
    """Write the run's model card ``log_dir/model.json`` (:func:`common.specs.model_card`):
    model ``name`` of ``framework`` built with ``kwargs``, the side of the images the test
    transform makes and its normalisation, the training set's class names, and ``recipe``
    (the script's module). The main process calls it before the first checkpoint."""
    transform = test_loader.transform
    mean, std = transforms.normalization(transform)
    side = transform(test_loader.dataset.images[0], np.random.default_rng(0)).shape[-1]
    specs.write_model_card(log_dir, specs.model_card(
        name, framework, kwargs, mean, std, train_set.classes, recipe, input_size=side))

