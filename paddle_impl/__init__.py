"""The PaddlePaddle implementations of the families in ``paddle_impl/models/``, under the same
names in every framework: ``create_model(name, pretrained=None, **kwargs)``,
``load_model(path)``, ``resolve_checkpoint(path)``,
``load_checkpoint(model, name, path, **kwargs)``, ``list_models()`` and
``set_threads(n)``."""
from common.registry import Registry

_registry = Registry("paddle", __name__ + ".models", __name__ + ".weights")
register_model = _registry.register
create_model = _registry.create_model
list_models = _registry.list_models
load_model = _registry.load_model
resolve_checkpoint = _registry.resolve_checkpoint
load_checkpoint = _registry.load_checkpoint


def set_threads(n):
    """Run Paddle's CPU operators on ``n`` threads. Paddle's own default is one: it pins
    ``OMP_NUM_THREADS`` to 1 at import unless set (and warns on stderr when it is above 1).
    ``core.set_num_threads`` sets its math library's count, not that of the OpenMP runtime
    its oneDNN convolutions run on (measured: a 3x3 convolution kept one core busy), so the
    runtime Paddle ships is told too (both cores busy, 1.45x faster)."""
    import paddle
    from paddle.base import core
    core.set_num_threads(n)
    openmp = omp_runtime(paddle)
    if openmp is not None:
        openmp.omp_set_num_threads(n)


def omp_runtime(paddle):
    """The OpenMP runtime in Paddle's wheel (``paddle/libs/libiomp5.so``), or None."""
    import ctypes
    import os
    path = os.path.join(os.path.dirname(paddle.__file__), "libs", "libiomp5.so")
    return ctypes.CDLL(path) if os.path.exists(path) else None
