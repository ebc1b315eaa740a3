"""Fused CPU operators for MXNet, built from the C++ sources beside this file into a shared
library that ``mx.library.load`` registers (MXNet's ``lib_api.h``, shipped in its wheel;
about 5 s), the first time a process needs one, where a C++ compiler is present; elsewhere
the models compute the same with composed MXNet operations. Builds are cached per machine
and source (``common.toolchain.cached_build``). A loaded operator is ``F.<its name>`` for
NDArrays and Symbols alike; it runs on the threads of MXNet's OpenMP runtime (libgomp,
which the library links too), ``OMP_NUM_THREADS`` of them.
"""
import functools
import os
import subprocess
import sys

import mxnet as mx

from common.toolchain import CXX_FLAGS, SHARED_HEADERS, cached_build, cxx_compiler

SOURCES = os.path.dirname(os.path.abspath(__file__))


def for_data(name, F, x):
    """Whether the operators of ``<name>.cc`` can compute on ``x`` (and :func:`load` has
    them). They have a CPU implementation only: an NDArray must be on the CPU, and a Symbol
    (a hybridized block builds its graph before it knows its context) is given them only
    where MXNet sees no GPU."""
    on_cpu = x.context.device_type == "cpu" if F is mx.nd else mx.context.num_gpus() == 0
    return on_cpu and load(name)


@functools.lru_cache(maxsize=None)
def load(name):
    """True once the operators of ``<name>.cc`` are registered with MXNet (built, or loaded
    from the cache); False where no C++ compiler is present or the build fails (one line on
    stderr names its log)."""
    root = os.path.dirname(mx.__file__)

    def build(folder):
        library = os.path.join(folder, f"{name}.so")
        if not os.path.exists(library):
            partial = f"{library}.{os.getpid()}"
            compiler = subprocess.run([cxx_compiler(), "-shared", "-fPIC", "-std=c++17",
                                       *CXX_FLAGS, "-I", os.path.join(root, "include"),
                                       "-I", SHARED_HEADERS,
                                       os.path.join(SOURCES, f"{name}.cc"),
                                       os.path.join(root, "src", "lib_api.cc"), "-o", partial])
            if compiler.returncode:
                raise RuntimeError(f"the C++ compiler exited with status {compiler.returncode}")
            os.replace(partial, library)
        mx.library.load(library, verbose=False)
        return True
    return bool(cached_build("MXNet", SOURCES, name,
                             (CXX_FLAGS, mx.__version__, sys.version_info[:2]), build,
                             f"{name}.so"))
