"""What every train script shares, whatever its framework: the common flags (one spelling,
timm's), the data loaders they describe, a run folder with a log file, per-epoch metrics and
TensorBoard scalars, progress, and one-line errors.

A run folder (``--log-dir``; claimed by :func:`open_run`, see :mod:`common.run_folder`)
holds ``args.yaml`` (the arguments and versions), ``train.log`` (what the console shows,
plus a progress line every ``--log-interval`` batches), ``metrics.jsonl`` (one JSON object
per epoch, easy to plot or compare), ``learning-curves.png``, TensorBoard event files, the
model card ``model.json`` (:func:`write_run_card`) and the checkpoints the script writes
(``model-last.*`` every epoch, ``model-best.*`` at the best validation accuracy,
``train-state.*`` for ``--resume``), each written atomically (:mod:`common.checkpoint`).

Missing or damaged data ends a run with one line and exit status 2 (:func:`reported`); an
image that cannot be decoded is skipped with a warning and counted (``--strict-data``: fatal).

Fine-tuning: ``--initial-checkpoint`` starts the model from a checkpoint of any format
written by any framework (:func:`load_initial_checkpoint`), and ``--num-classes`` sets the
classes the model predicts (:func:`model_classes`); when they differ from the checkpoint's,
only the classifier keeps the recipe's initialisation.
"""
import argparse
import contextlib
import functools
import importlib
import json
import logging
import os
import sys
import time
import types

import numpy as np
from tqdm import tqdm

from . import run_folder, specs, transforms
from .checkpoint import CheckpointError, atomic_open
from .convert import ConversionError
from .data import DATASETS, DEFAULT_DATASET, DatasetError, get_dataset
from .loader import BatchLoader, ShardLoader
from .memory import keep_freed_memory
from .processes import Processes


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` of every train script: its description as written, and the default of
    every flag that has one (not of switches, unset flags, or help that names its default)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_common_args(parser, checkpoint_aliases=(), datasets=DATASETS, **defaults):
    """The flags every train script has, spelled as timm spells them; ``defaults``
    overrides a recipe's values (e.g. ``lr=0.1, batch_size=128``); ``datasets`` are those
    the recipe supports; ``checkpoint_aliases`` are further spellings of
    ``--initial-checkpoint`` (the Residual Attention scripts' ``--init-from``)."""
    d = dict(dataset=DEFAULT_DATASET, epochs=1, batch_size=64, lr=0.1, wd=1e-4, seed=0, workers=2,
             log_dir=None, save_period=1, log_interval=50)
    d.update(defaults)
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default=d["dataset"], choices=datasets,
                   help="'digits' is the embedded default; the others read --data-dir")
    g.add_argument("--data-dir", default=None, help="folder of the dataset's official files")
    g.add_argument("--download", action="store_true", help="download CIFAR if it is missing")
    g.add_argument("-j", "--workers", type=int, default=d["workers"],
                   help="worker processes decoding and augmenting batches (0: in the main "
                        "process); the batches are the same whatever the number")
    g.add_argument("--threads", type=int, default=None,
                   help="threads of the framework's CPU operators (default: OMP_NUM_THREADS "
                        "if set, else every core this process may use)")
    g.add_argument("--strict-data", action="store_true",
                   help="stop at an image that cannot be decoded (default: skip it with a warning)")
    g = parser.add_argument_group("schedule")
    g.add_argument("--epochs", type=int, default=d["epochs"], help="epochs of the schedule")
    g.add_argument("-b", "--batch-size", type=int, default=d["batch_size"], help="images per step")
    g.add_argument("--lr", type=float, default=d["lr"], help="base learning rate")
    g.add_argument("--weight-decay", "--wd", dest="wd", type=float, default=d["wd"],
                   help="weight decay")
    g.add_argument("--seed", type=int, default=d["seed"], help="seed of the weights, order and augmentation")
    g.add_argument("--max-batches", type=int, default=None,
                   help="stop each epoch after N batches (smoke runs)")
    g = parser.add_argument_group("run folder")
    g.add_argument("--log-dir", default=d["log_dir"], help="run folder (default runs/<name>-<dataset>)")
    g.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH",
                   help="continue the run in --log-dir, or in run folder PATH (or the folder of "
                        "checkpoint PATH)")
    g.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue even when flags that define the schedule or "
                        "the data differ from the run's args.yaml")
    g.add_argument("--overwrite", action="store_true",
                   help="start anew in a folder that holds a run, after moving that run aside "
                        "to <folder>.old-<time>")
    g.add_argument("--stop-after", type=int, default=None,
                   help="train at most N epochs in this invocation (the schedule still spans "
                        "--epochs; continue with --resume)")
    g.add_argument("--save-period", type=int, default=d["save_period"],
                   help="also keep a checkpoint every N epochs (0: never)")
    g.add_argument("--log-interval", type=int, default=d["log_interval"],
                   help="without a terminal, log a progress line every N batches (0: never)")
    g.add_argument("--debug", action="store_true", help="show the traceback of a data error")
    g.add_argument("--initial-checkpoint", *checkpoint_aliases, dest="initial_checkpoint",
                   default=None, metavar="PATH",
                   help="start from these weights (.params, .pdparams, .pth, .pt or .safetensors, "
                        "written by any framework) instead of the recipe's initialisation; "
                        "not read with --resume")
    g.add_argument("--num-classes", type=int, default=None,
                   help="classes the model predicts (default: the dataset's); when it differs "
                        "from --initial-checkpoint's, only the classifier is re-initialised")
    return parser


def build_loaders(args, train_transform, test_transform, drop_last=True, processes=Processes(),
                  log=None):
    """(train dataset, test dataset, train loader, test loader) of this process of
    ``processes`` (its share of every global batch of ``--batch-size`` images:
    :class:`common.loader.ShardLoader`) for the parsed ``args``. ``*_transform(mean, std)``
    build the augmentation from the dataset's statistics. An image that cannot be decoded is
    skipped with a warning to ``log`` (stderr without one), or stops the run with
    ``--strict-data``."""
    if args.batch_size % processes.world:
        refuse(f"--batch-size {args.batch_size} must be a multiple of the "
                         f"{processes.world} processes")
    train = get_dataset(args.dataset, "train", args.data_dir, args.download)
    test = get_dataset(args.dataset, "test", args.data_dir)
    skip = None if args.strict_data else (log.warning if log is not None else warn)
    loader = BatchLoader if processes.world == 1 else functools.partial(
        ShardLoader, rank=processes.rank, world=processes.world)
    train_loader = loader(train, args.batch_size, train_transform(train.mean, train.std),
                          shuffle=True, drop_last=drop_last, seed=args.seed, workers=args.workers,
                          skip_bad=skip)
    test_loader = loader(test, args.batch_size, test_transform(train.mean, train.std),
                         seed=args.seed, workers=args.workers, skip_bad=skip)
    if len(train_loader) == 0:
        refuse(f"{args.dataset} has {len(train)} training images, fewer than one "
                         f"batch of {args.batch_size}")
    if len(test_loader) == 0:
        refuse(f"{args.dataset} has {len(test)} test images, none for process "
                         f"{processes.rank} of {processes.world} (a share of {test_loader.batch_size})")
    return train, test, train_loader, test_loader


def refuse(message):
    """End the command with ``error: message`` on stderr and exit status 2, as a bad flag."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def cifar_transforms(size=32, pad=4):
    """(train, test) transform builders of the CIFAR / Tiny ImageNet recipes."""
    return (lambda mean, std: transforms.cifar_train(mean, std, size, pad)), transforms.plain


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


class RunLog:
    """Console + ``train.log`` logging, ``metrics.jsonl`` and TensorBoard scalars. The scalar
    writer is ``board(log_dir)`` (default :class:`ScalarWriter`; None: none), opened at the
    first epoch's end, so a run that fails before it leaves no event file (and the Gluon
    scripts' mxboard comes after any torch import of a checkpoint: their protobufs clash)."""

    def __init__(self, log_dir, name, resume=False, board=ScalarWriter):
        self.dir = log_dir
        os.makedirs(log_dir, exist_ok=True)
        self.metrics_path = os.path.join(log_dir, "metrics.jsonl")
        if not resume and os.path.exists(self.metrics_path):
            os.remove(self.metrics_path)
        self.logger = logging.getLogger(f"attention_ports.{name}.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        self.file = logging.FileHandler(os.path.join(log_dir, "train.log"))
        self.console = ConsoleHandler()
        for handler in (self.console, self.file):
            handler.setFormatter(fmt)
            self.logger.addHandler(handler)
        self._board, self.board = board, None

    def info(self, message, *args):
        self.logger.info(message, *args)

    def warning(self, message, *args):
        """A line on stderr and in ``train.log``, prefixed ``warning:``."""
        self.logger.warning("warning: " + message, *args)

    def error(self, message, *args):
        """A line on stderr and in ``train.log``, prefixed ``error:``."""
        self.logger.error("error: " + message, *args)

    def progress(self, message, console):
        """A progress line: always in ``train.log``, on the console when ``console``."""
        self.logger.info(message, extra={"console": console})

    def epoch(self, epoch, **metrics):
        """Record one epoch's metrics: a console line, a JSON line and scalars."""
        record = {"epoch": epoch, "time": time.time(), **metrics}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.info("[epoch %d] %s", epoch, "  ".join(f"{k} {number(v)}" for k, v in metrics.items()))
        if self.board is None and self._board is not None:
            self.board = self._board(self.dir)
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
            self.board = None
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)



class ConsoleHandler(logging.Handler):
    """The console half of a run's log: warnings and errors on stderr as they are, the rest
    on stdout with the time (a record with ``console=False`` only goes to the file)."""

    def emit(self, record):
        if not getattr(record, "console", True):
            return
        if record.levelno >= logging.WARNING:
            sys.stderr.write(record.getMessage() + "\n")
            sys.stderr.flush()
        else:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()


def number(value):
    """A metric as the log shows it: 4 decimals, or 4 significant digits for a small
    non-zero value (a learning rate of 5e-05 is not shown as 0.0000)."""
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.4g}"
    return str(value)


def duration(seconds):
    """``H:MM:SS``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """The progress of one pass over a loader: a tqdm bar on stderr when it is a terminal
    (or ``ATTENTION_PORTS_PROGRESS`` is set), and a line every ``interval`` batches in
    ``log``'s ``train.log``, shown on the console too when there is no bar: batch, mean
    loss and accuracy so far, learning rate ``lr(batch)``, images per second, ETA."""

    def __init__(self, total, desc, log=None, interval=0, lr=None):
        self.total, self.desc, self.log, self.interval, self.lr = total, desc, log, interval, lr
        self.bar = progress(None, total, desc)
        self.bar_on = not self.bar.disable
        self.start = time.perf_counter()

    def update(self, batch, loss, acc, seen):
        """After batch ``batch`` (from 0): mean loss and accuracy of the ``seen`` images so far."""
        self.bar.update()
        self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
        done = batch + 1
        if self.log is None or not self.interval or (done % self.interval and done != self.total):
            return
        elapsed = time.perf_counter() - self.start
        rate = f"  lr {number(float(self.lr(batch)))}" if self.lr is not None else ""
        self.log.progress(f"{self.desc} [{done}/{self.total}] loss {loss:.4f}  acc {acc:.4f}{rate}  "
                          f"{seen / elapsed:.1f} img/s  ETA {duration(elapsed / done * (self.total - done))}",
                          console=not self.bar_on)

    def close(self):
        self.bar.close()


def progress(iterable, total, desc):
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal and
    ``ATTENTION_PORTS_PROGRESS`` is not set)."""
    disable = not (sys.stderr.isatty() or os.environ.get("ATTENTION_PORTS_PROGRESS"))
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=disable)


def open_run(args, framework, name, module, session, argv=None, main=True, board=ScalarWriter):
    """The run folder of this command for a run of ``session`` (class), claimed
    (:func:`common.run_folder.claim`: a run is never replaced, ``--resume`` continues the
    same one with all it needs), with its log open and ``args.yaml`` written; sets
    ``args.log_dir``. ``name`` names the default folder
    (``runs/<name>-<dataset>``) and the logger, ``module`` and ``argv`` the command.
    A folder that cannot be used ends the command with one line and exit status 2, before
    anything is written. A process other than the ``main`` one gets a silent log. The
    framework then runs on ``--threads`` threads (:func:`use_threads`), set after every
    import (importing a framework can change another's count), and freed memory is kept for
    the next tensor (:func:`common.memory.keep_freed_memory`)."""
    keep_freed_memory()
    try:
        log_dir = run_folder.run_dir(args, name)
        moved, changed = run_folder.claim(args, log_dir, session, main)
    except run_folder.RunFolderError as e:
        refuse(e)
    args.log_dir = log_dir
    if not main:
        use_threads(args, framework)
        return quiet_log(log_dir)
    log = RunLog(log_dir, name, resume=bool(args.resume), board=board)
    log.info("%s on %d CPU threads", framework, use_threads(args, framework))
    if moved:
        log.info("--overwrite: the earlier run of %s is now in %s", log_dir, moved)
    if changed:
        log.warning("--allow-changes: resuming with %s", changed)
    if changed or not args.resume:
        run_folder.write_args(log_dir, args, framework, module, argv)
    return log


def use_threads(args, framework):
    """Set ``framework``'s CPU threads to ``--threads``; by default ``OMP_NUM_THREADS`` when
    the user set it, else every core this process may use. Returns the count."""
    from . import USER_OMP_THREADS
    threads = args.threads or (int(USER_OMP_THREADS) if (USER_OMP_THREADS or "").isdigit()
                               else len(os.sched_getaffinity(0)))
    importlib.import_module(f"{framework}_impl").set_threads(threads)
    return threads


def child_environment(**extra):
    """The environment for a train script started from this process: ``os.environ`` and
    ``extra``, without the ``OMP_NUM_THREADS=1`` that importing Paddle writes into it (a
    value the user set is kept), so the child's :func:`use_threads` sees what the user asked."""
    from . import USER_OMP_THREADS
    env = dict(os.environ, **extra)
    if USER_OMP_THREADS is None:
        env.pop("OMP_NUM_THREADS", None)
    else:
        env["OMP_NUM_THREADS"] = USER_OMP_THREADS
    return env


def quiet_log(log_dir):
    """The log of a process other than the main one: the run folder's path, errors on
    stderr, and silence."""
    return types.SimpleNamespace(dir=log_dir, info=lambda *_: None, warning=lambda *_: None,
                                 progress=lambda *_, **__: None, close=lambda: None,
                                 error=lambda message, *a: print("error: " + message % a,
                                                                 file=sys.stderr))


@contextlib.contextmanager
def reported(args, log):
    """Data that is missing or damaged ends the run with one line on stderr and in
    ``train.log`` and exit status 2, without a traceback (``--debug`` shows it)."""
    try:
        yield
    except DatasetError as e:
        if args.debug:
            raise
        log.error("%s", one_line(e))
        raise SystemExit(2) from None


def parse(parser, argv=None):
    """Parse ``argv`` and reject flag combinations that cannot work, with a clear message."""
    args = parser.parse_args(argv)
    for flag, least in (("epochs", 1), ("batch_size", 1), ("save_period", 0), ("log_interval", 0),
                        ("stop_after", 1), ("max_batches", 1), ("workers", 0), ("threads", 1)):
        if getattr(args, flag, None) is not None and getattr(args, flag) < least:
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
        refuse(f"--num-classes {classes} is smaller than the {dataset.num_classes} classes of "
               f"{dataset.name}")
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
        refuse(f"--initial-checkpoint: {one_line(e)}")
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

