"""Fused CPU operators for Paddle, built from the C++ sources beside this file (Paddle's
``cpp_extension``, about 10 s) the first time a process needs one, where a C++ compiler is
present (``common.toolchain``); elsewhere the models compute the same with composed Paddle
operations.

A build is kept under ``$XDG_CACHE_HOME/attention-ports/paddle-kernels`` (by default
``~/.cache/...``), in a folder named by a hash of the source and the headers beside it
(``fused.h``: helpers the operators share), the flags, Paddle's and Python's versions and
the processor's instruction sets (the code is built for this processor, ``-march=native``):
a changed source or another machine builds anew, a later process only loads it (about 1 s). A lock lets one process build while others (a
launcher's workers) wait. The operators run on the threads of Paddle's own OpenMP runtime,
which they link, so ``paddle_impl.set_threads`` sets their number too.
"""
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import sys

from common.toolchain import cxx_compiler

SOURCES = os.path.dirname(os.path.abspath(__file__))
CXX_FLAGS = ["-O3", "-fopenmp", "-march=native"]


def cache_root():
    """Where builds are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "attention-ports", "paddle-kernels")


def _instruction_sets():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


@contextlib.contextmanager
def _output_to(path):
    """This process's and its children's stdout and stderr into ``path`` (the builder
    prints every step, and its compiler subprocess writes to the inherited descriptors)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    quiet = logging.getLogger("utils.cpp_extension")
    level = quiet.level
    try:
        with open(path, "w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            quiet.setLevel(logging.WARNING)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        quiet.setLevel(level)


def for_tensor(name, x):
    """The operators of ``<name>.cc`` where they can compute on ``x`` (a CPU tensor, and
    :func:`load` has them), else None: the caller computes with composed operations."""
    return load(name) if x.place.is_cpu_place() else None


@functools.lru_cache(maxsize=None)
def load(name):
    """The operators of ``<name>.cc`` as a module (built, or loaded from the cache), or None
    where no C++ compiler is present or the build fails (one line on stderr names its log)."""
    if cxx_compiler() is None:
        return None
    import paddle
    from paddle.utils.cpp_extension import load as build
    libs = os.path.join(os.path.dirname(paddle.__file__), "libs")
    openmp = ["-l:libiomp5.so"] if os.path.exists(os.path.join(libs, "libiomp5.so")) else ["-fopenmp"]
    identity = hashlib.sha256(repr((CXX_FLAGS, openmp, paddle.__version__, sys.version_info[:2],
                                    _instruction_sets())).encode())
    for part in [f"{name}.cc", *sorted(f for f in os.listdir(SOURCES) if f.endswith(".h"))]:
        with open(os.path.join(SOURCES, part), "rb") as f:
            identity.update(f.read())
    folder = os.path.join(cache_root(), f"{name}-{identity.hexdigest()[:16]}")
    log = os.path.join(folder, "build.log")
    try:  # a compiler that cannot build it, or a cache that cannot be written: composed
        os.makedirs(folder, exist_ok=True)
        with open(folder + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(folder, name, f"{name}.so")):
                print(f"building Paddle's fused {name} kernel for this machine (once, about "
                      f"10 s)", file=sys.stderr, flush=True)
            with _output_to(log):
                return build(name=name, sources=[os.path.join(SOURCES, f"{name}.cc")],
                             build_directory=folder, extra_cxx_cflags=CXX_FLAGS,
                             extra_ldflags=openmp)
    except Exception as e:
        print(f"warning: Paddle's fused {name} kernel did not build ({type(e).__name__}: "
              f"{str(e).splitlines()[0][:200] if str(e) else ''}; see {log}): using composed "
              f"operations", file=sys.stderr)
        return None
