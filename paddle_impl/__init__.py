"""The PaddlePaddle implementations: ``create_model(name, **kwargs)`` and ``list_models()``
over the families in ``paddle_impl/models/`` (the same names in every framework)."""
from common.registry import Registry

_registry = Registry("paddle", __name__ + ".models")
register_model = _registry.register
create_model = _registry.create_model
list_models = _registry.list_models
