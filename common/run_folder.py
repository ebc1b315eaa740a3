"""The run folder's life: which folder a run writes, that it never replaces another run, and
the record of how it was started (``args.yaml``), so that ``--resume`` continues the same run.

* A folder *holds a run* once it has a checkpoint or a finished epoch (:data:`RUN_MARKERS`).
  A new run there stops before writing anything, with one line naming the folder and the
  ways on: ``--resume``, another ``--log-dir``, or ``--overwrite``, which moves the old run
  aside to ``<folder>.old-<time>`` (never mixing its files with the new ones). A folder with
  only the log of a start that failed (missing data, say) is not a run: a new start appends
  to its ``train.log``.
* ``args.yaml`` is written when a run starts: every argument, the command line, the
  versions of Python, numpy and the three frameworks.
* ``--resume`` compares the arguments with the run's ``args.yaml``. Any that defines the
  schedule or the data (everything but :data:`FREE_ON_RESUME`: epochs, learning rate, batch
  size, dataset, seed, recipe knobs...) must be the same, or the run stops with one line
  naming them, unless ``--allow-changes``, which records the new values.
"""
import datetime
import glob
import os
import platform
import shlex
import sys
from importlib import metadata

import yaml

from .checkpoint import atomic_open

ARGS_FILE = "args.yaml"
STATE_FILE = "train-state.json"
RUN_MARKERS = ("metrics.jsonl", "train-state.json", "model-*.*")
# flags that say how a run executes or where it reads and writes, not what it computes
# (a device or the precision changes round-off, not the schedule)
FREE_ON_RESUME = frozenset({
    "resume", "log_dir", "overwrite", "allow_changes", "workers", "threads", "log_interval",
    "debug", "strict_data", "data_dir", "download", "stop_after", "save_period",
    "initial_checkpoint", "config", "grid", "device", "ctx", "amp", "kvstore", "channels_last",
    "compile"})
VERSIONED = ("numpy", "torch", "mxnet", "paddlepaddle")


class RunFolderError(RuntimeError):
    """A run folder that this command must not use as asked; the message is one line."""


def run_dir(args, name):
    """The folder of this run: ``--resume PATH`` (a run folder, or a file in one), else
    ``--log-dir``, else ``runs/<name>-<dataset>``."""
    if isinstance(args.resume, str):
        folder = args.resume if os.path.isdir(args.resume) else os.path.dirname(args.resume) or "."
        if args.log_dir and os.path.realpath(args.log_dir) != os.path.realpath(folder):
            raise RunFolderError(f"--resume {args.resume} and --log-dir {args.log_dir} name two "
                                 f"different runs; give one")
        return folder
    return args.log_dir or os.path.join("runs", f"{name}-{args.dataset}")


def run_paths(log_dir, session):
    """The run folder's files; ``session`` may be a session class (its ``*_ext`` attributes)."""
    return dict(best=os.path.join(log_dir, f"model-best.{session.weights_ext}"),
                last=os.path.join(log_dir, f"model-last.{session.weights_ext}"),
                optimizer=os.path.join(log_dir, f"train-state.{session.optimizer_ext}"),
                state=os.path.join(log_dir, STATE_FILE))


def check_resume(log_dir, session):
    """Raise :class:`RunFolderError` when a file that ``--resume`` needs is missing from
    ``log_dir``."""
    paths = run_paths(log_dir, session)
    missing = [os.path.basename(paths[k]) for k in ("state", "last", "optimizer")
               if not os.path.exists(paths[k])]
    if missing:
        raise RunFolderError(f"--resume: nothing to resume in {log_dir} (no "
                             f"{', '.join(missing)}): there is nothing to continue")


def holds_run(folder):
    """The files of ``folder`` that show a run lives there (empty when none)."""
    return sorted(os.path.basename(p) for pattern in RUN_MARKERS
                  for p in glob.glob(os.path.join(glob.escape(folder), pattern)))


def aside_name(folder, now=None):
    """Where ``--overwrite`` moves the run in ``folder``: ``<folder>.old-<YYYYmmdd-HHMMSS>``
    (``-2``, ``-3``... when taken)."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{os.path.normpath(folder)}.old-{stamp}"
    target, n = base, 1
    while os.path.exists(target):
        n += 1
        target = f"{base}-{n}"
    return target


def claim(args, folder, session, main=True):
    """Check that this command may use ``folder`` for a run of ``session`` (its class will
    do: the extensions of its files); returns ``(moved, changed)``: where ``--overwrite``
    moved an earlier run (or None), and the flags a ``--resume --allow-changes`` changes (or
    ""). Every process of a launch checks; only the ``main`` one moves. Raises
    :class:`RunFolderError` when a run would be lost or cannot continue."""
    found = holds_run(folder) if os.path.isdir(folder) else []
    if args.resume:
        if args.overwrite:
            raise RunFolderError("--resume continues a run and --overwrite replaces it; give one")
        if not found:
            raise RunFolderError(f"--resume: {folder} holds no run to continue")
        check_resume(folder, session)
        changed = changed_args(args, folder)
        if changed and not args.allow_changes:
            raise RunFolderError(
                f"--resume: {folder} was started with {changed}; flags that define the schedule "
                f"or the data must stay the same (add --allow-changes to continue anyway)")
        return None, changed
    if not found:
        return None, ""
    if not args.overwrite:
        raise RunFolderError(
            f"{folder} already holds a run ({', '.join(found[:4])}); continue it with --resume, "
            f"choose another --log-dir, or add --overwrite to move it aside")
    if not main:
        return None, ""
    target = aside_name(folder)
    os.rename(folder, target)
    return target, ""


def recorded_args(args):
    """The plain values of ``args`` (what a YAML file holds; derived objects are left out)."""
    plain = (str, int, float, bool, type(None))
    out = {}
    for key, value in sorted(vars(args).items()):
        if isinstance(value, (list, tuple)) and all(isinstance(v, plain) for v in value):
            out[key] = list(value)
        elif isinstance(value, plain):
            out[key] = value
    return out


def read_args(folder):
    """The ``args`` recorded in ``folder/args.yaml`` (None for a run without one)."""
    path = os.path.join(folder, ARGS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return (yaml.safe_load(f) or {}).get("args")
    except (OSError, yaml.YAMLError, AttributeError) as e:
        raise RunFolderError(f"{path}: unreadable ({' '.join(str(e).split())})") from None


def changed_args(args, folder):
    """``--flag old -> new`` for every argument that differs from the run's ``args.yaml``
    and may not change on resume (an empty string when none does)."""
    before = read_args(folder)
    if before is None:
        return ""
    now = recorded_args(args)
    return ", ".join(f"--{k.replace('_', '-')} {before[k]} (this command: {now[k]})" for k in sorted(now)
                     if k in before and k not in FREE_ON_RESUME and before[k] != now[k])


def versions():
    """Python, numpy and the installed frameworks' versions."""
    out = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_args(folder, args, framework, module, argv=None):
    """Write ``folder/args.yaml``: the arguments, the command (``python -m module argv``;
    ``argv`` by default the process's), the framework, the versions."""
    argv = sys.argv[1:] if argv is None else list(argv)
    record = {"command": shlex.join(["python", "-m", module, *argv]),
              "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "framework": framework, "versions": versions(), "args": recorded_args(args)}
    with atomic_open(os.path.join(folder, ARGS_FILE), "w") as f:
        yaml.safe_dump(record, f, sort_keys=False)
