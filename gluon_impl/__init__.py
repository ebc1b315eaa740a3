"""The MXNet Gluon implementations of the families in ``gluon_impl/models/``, under the same
names in every framework: ``create_model(name, pretrained=None, **kwargs)``,
``load_model(path)``, ``resolve_checkpoint(path)``,
``load_checkpoint(model, name, path, **kwargs)``, ``list_models()`` and
``set_threads(n)``.

Importing this package before MXNet puts every MXNet operator on the threads set
(``MXNET_USE_OPERATOR_TUNING=0`` unless set otherwise; MXNet reads it when it loads). By
default MXNet times its elementwise kernels at load and, on this project's 2-core machines,
runs them on one thread: a product of two 4 MB arrays took 0.49 ms, 0.20 on both threads.
Measured (2 threads, Gluon hybridized, ms, by default and with the setting): UPANets16 batch
64 inference 140 and 128 (``bench_upanets``: 0.89 and 0.97 of PyTorch), AlexNet-SimAM batch
32 train 155 and 141, Attention-56 batch 16 train 389 and 382. Results are unchanged: the
operators it affects compute each element alone.
"""
import os

os.environ.setdefault("MXNET_USE_OPERATOR_TUNING", "0")

from common.registry import Registry  # noqa: E402

_registry = Registry("gluon", __name__ + ".models", __name__ + ".weights")
register_model = _registry.register
create_model = _registry.create_model
list_models = _registry.list_models
load_model = _registry.load_model
resolve_checkpoint = _registry.resolve_checkpoint
load_checkpoint = _registry.load_checkpoint


def set_threads(n):
    """Run MXNet's CPU operators on ``n`` OpenMP threads."""
    import ctypes

    import mxnet as mx
    mx.base.check_call(mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(n)))
