"""A model registry per framework, in the spirit of timm.

Each ``*_impl`` package owns one :class:`Registry`; a model family file in its ``models/``
folder registers constructors with ``@register_model``. The folder is imported the first
time a model is listed or created, so adding a family needs no other edit.
"""
import importlib
import pkgutil


class Registry:
    def __init__(self, framework, models_package):
        self.framework, self.models_package = framework, models_package
        self._constructors = {}
        self._loaded = False

    def register(self, fn):
        """Decorator: register ``fn`` under its own name."""
        if fn.__name__ in self._constructors:
            raise ValueError(f"{self.framework}: model {fn.__name__!r} registered twice")
        self._constructors[fn.__name__] = fn
        return fn

    def _load(self):
        if not self._loaded:
            package = importlib.import_module(self.models_package)
            for info in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.models_package}.{info.name}")
            self._loaded = True

    def list_models(self):
        """Sorted names of every registered model."""
        self._load()
        return sorted(self._constructors)

    def create_model(self, name, **kwargs):
        """Build model ``name`` with the keyword arguments of its constructor."""
        self._load()
        if name not in self._constructors:
            raise KeyError(f"{self.framework} has no model {name!r}; available: "
                           f"{', '.join(sorted(self._constructors)) or 'none'}")
        return self._constructors[name](**kwargs)


def input_size(name, **kwargs):
    """The square input side a registered model expects: 32 for the CIFAR variants,
    ``img_size`` for UPANets (32 or 64), 128 for the AlexNets, 224 for ImageNet models."""
    if name.endswith("_cifar"):
        return 32
    if name.startswith("upanets"):
        return kwargs.get("img_size", 32)
    if name.startswith("alexnet"):
        return 128
    return 224
