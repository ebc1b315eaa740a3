"""The MXNet Gluon implementations of the families in ``gluon_impl/models/``, under the same
names in every framework: ``create_model(name, pretrained=None, **kwargs)``,
``load_model(path)``, ``resolve_checkpoint(path)``,
``load_checkpoint(model, name, path, **kwargs)``, ``list_models()`` and
``set_threads(n)``."""
from common.registry import Registry

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
