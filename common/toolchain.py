"""The C++ compiler that fused CPU kernels are built with, where one is installed (inductor's for
``torch.compile`` in ``pytorch_impl.layers``, Paddle's ``cpp_extension`` for
``paddle_impl/kernels``, a plain shared library for MXNet in ``gluon_impl/kernels``), and
:func:`cached_build`, how each framework's kernels are built once per machine and source.

A build is kept under ``$XDG_CACHE_HOME/attention-ports/<framework>-kernels`` (by default
``~/.cache/...``), in a folder named by a hash of the source, the headers beside it and in
:data:`SHARED_HEADERS` (framework-free C++ that every framework's kernels may include; the
build puts the folder on its include path), and the caller's identity of the build (flags, the
framework's and Python's versions) with the processor's instruction sets (the code is built
for this processor, ``-march=native``): a changed source or another machine builds anew, a
later process only loads it. A lock lets one process build while others (a launcher's workers)
wait.
"""
import contextlib
import fcntl
import hashlib
import os
import shutil
import sys

CXX_FLAGS = ["-O3", "-fopenmp", "-march=native"]
SHARED_HEADERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")


def cxx_compiler():
    """The path of ``$CXX``, ``g++`` or ``c++`` (the first found on the PATH), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def cache_root(framework):
    """Where ``framework``'s kernel builds are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "attention-ports", f"{framework}-kernels")


def _instruction_sets():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


@contextlib.contextmanager
def _output_to(path):
    """This process's and its children's stdout and stderr into ``path``: Python's
    ``sys.stdout`` and ``sys.stderr`` (a builder prints every step, and they need not be the
    descriptors: under pytest's capture, or where a caller redirected them) and the
    descriptors 1 and 2 (which a compiler subprocess inherits). Nothing of a build reaches
    the caller's output (``predict --json -`` writes its results there)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "w") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def cached_build(label, sources, name, identity, build, product):
    """What ``build(folder)`` returns for the kernel ``<sources>/<name>.cc`` of the framework
    ``label`` (``"Paddle"``, ``"MXNet"``): it builds into ``folder`` the first time (saying so
    on stderr: ``product``, a path in ``folder``, is not there yet) and loads. None where no
    C++ compiler is present, or where the build or the cache fails: one line on stderr names
    the error and the build's log, and the caller computes with composed operations."""
    if cxx_compiler() is None:
        return None
    digest = hashlib.sha256(repr((identity, _instruction_sets())).encode())
    parts = [os.path.join(sources, f"{name}.cc")]
    for where in (sources, SHARED_HEADERS):
        parts += sorted(os.path.join(where, f) for f in os.listdir(where) if f.endswith(".h"))
    for part in parts:
        with open(part, "rb") as f:
            digest.update(f.read())
    folder = os.path.join(cache_root(label.lower()), f"{name}-{digest.hexdigest()[:16]}")
    log = os.path.join(folder, "build.log")
    try:  # a compiler that cannot build it, or a cache that cannot be written: composed
        os.makedirs(folder, exist_ok=True)
        with open(folder + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(folder, product)):
                print(f"building {label}'s fused {name} kernel for this machine (once, about "
                      f"10 s)", file=sys.stderr, flush=True)
            with _output_to(log):
                return build(folder)
    except Exception as e:
        print(f"warning: {label}'s fused {name} kernel did not build ({type(e).__name__}: "
              f"{str(e).splitlines()[0][:200] if str(e) else ''}; see {log}): using composed "
              f"operations", file=sys.stderr)
        return None
