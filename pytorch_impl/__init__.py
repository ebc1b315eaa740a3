"""The PyTorch implementations of the families in ``pytorch_impl/models/``, under the same
names in every framework: ``create_model(name, pretrained=None, **kwargs)``,
``load_model(path)``, ``resolve_checkpoint(path)``,
``load_checkpoint(model, name, path, **kwargs)``, ``list_models()`` and
``set_threads(n)``."""
from common.registry import Registry

_registry = Registry("pytorch", __name__ + ".models", __name__ + ".weights")
register_model = _registry.register
create_model = _registry.create_model
list_models = _registry.list_models
load_model = _registry.load_model
resolve_checkpoint = _registry.resolve_checkpoint
load_checkpoint = _registry.load_checkpoint


def set_threads(n):
    """Run PyTorch's CPU operators on ``n`` threads."""
    import torch
    torch.set_num_threads(n)
