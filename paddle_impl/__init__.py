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
    ``OMP_NUM_THREADS`` to 1 at import unless set (and warns on stderr when it is above 1),
    so the count is set here, after the import, without the variable."""
    from paddle.base import core
    core.set_num_threads(n)
