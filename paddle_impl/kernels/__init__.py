"""Fused CPU operators for Paddle, built from the C++ sources beside this file (Paddle's
``cpp_extension``, about 10 s) the first time a process needs one, where a C++ compiler is
present; elsewhere the models compute the same with composed Paddle operations. Builds are
cached per machine and source (``common.toolchain.cached_build``; a later process only
loads, about 1 s); ``fused.h`` holds helpers the operators share. The operators run on the
threads of Paddle's own OpenMP runtime, which they link, so ``paddle_impl.set_threads`` sets
their number too.
"""
import functools
import logging
import os
import sys

from common.toolchain import CXX_FLAGS, SHARED_HEADERS, cached_build

SOURCES = os.path.dirname(os.path.abspath(__file__))


def for_tensor(name, x):
    """The operators of ``<name>.cc`` where they can compute on ``x`` (a CPU tensor, and
    :func:`load` has them), else None: the caller computes with composed operations."""
    return load(name) if x.place.is_cpu_place() else None


@functools.lru_cache(maxsize=None)
def load(name):
    """The operators of ``<name>.cc`` as a module (built, or loaded from the cache), or None
    where no C++ compiler is present or the build fails (one line on stderr names its log)."""
    import paddle
    from paddle.utils.cpp_extension import load as extension
    libs = os.path.join(os.path.dirname(paddle.__file__), "libs")
    openmp = ["-l:libiomp5.so"] if os.path.exists(os.path.join(libs, "libiomp5.so")) else ["-fopenmp"]

    def build(folder):
        quiet = logging.getLogger("utils.cpp_extension")  # it logs every step
        level = quiet.level
        quiet.setLevel(logging.WARNING)
        try:
            return extension(name=name, sources=[os.path.join(SOURCES, f"{name}.cc")],
                             build_directory=folder, extra_cxx_cflags=CXX_FLAGS,
                             extra_include_paths=[SHARED_HEADERS], extra_ldflags=openmp)
        finally:
            quiet.setLevel(level)
    return cached_build("Paddle", SOURCES, name,
                        (CXX_FLAGS, openmp, paddle.__version__, sys.version_info[:2]), build,
                        os.path.join(name, f"{name}.so"))
