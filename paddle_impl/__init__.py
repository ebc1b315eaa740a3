"""The PaddlePaddle implementations of the families in ``paddle_impl/models/``, under the same
names in every framework: ``create_model(name, pretrained=None, **kwargs)``,
``load_model(path)``, ``resolve_checkpoint(path)``,
``load_checkpoint(model, name, path, **kwargs)`` and ``list_models()``."""
from common.registry import Registry

_registry = Registry("paddle", __name__ + ".models", __name__ + ".weights")
register_model = _registry.register
create_model = _registry.create_model
list_models = _registry.list_models
load_model = _registry.load_model
resolve_checkpoint = _registry.resolve_checkpoint
load_checkpoint = _registry.load_checkpoint
