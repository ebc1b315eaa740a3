"""The C++ compiler that fused CPU kernels are built with, where one is installed: inductor's
for ``torch.compile`` (``pytorch_impl.layers``) and Paddle's ``cpp_extension`` for
``paddle_impl/kernels``."""
import os
import shutil


def cxx_compiler():
    """The path of ``$CXX``, ``g++`` or ``c++`` (the first found on the PATH), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None
