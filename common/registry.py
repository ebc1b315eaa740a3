"""A model registry per framework, in the spirit of timm.

Each ``*_impl`` package owns one :class:`Registry`; a model family file in its ``models/``
folder registers constructors with ``@register_model``. The folder is imported the first
time a model is listed or created, so adding a family needs no other edit.
"""
import importlib
import json
import pkgutil


class Registry:
    """The models of one framework (``framework``: 'gluon', 'paddle' or 'pytorch'), whose
    families live in ``models_package``; ``weights_module`` is the framework's module with
    ``shapes_of(name, **kwargs)`` ({name: shape} without allocating weights) and
    ``load_weights(model, state, left=())`` (put ``state`` into ``model``, return it in eval
    mode), imported when weights are first needed."""

    def __init__(self, framework, models_package, weights_module):
        self.framework, self.models_package = framework, models_package
        self.weights_module = weights_module
        self._constructors = {}
        self._loaded = False
        self._shapes = {}

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

    def _constructor(self, name):
        self._load()
        if name not in self._constructors:
            raise KeyError(f"{self.framework} has no model {name!r}; available: "
                           f"{', '.join(sorted(self._constructors)) or 'none'}")
        return self._constructors[name]

    def shapes(self, name, **kwargs):
        """``{name: shape}`` of model ``name`` built with ``kwargs``, without allocating its
        weights; built once per process."""
        key = (name, self._constructor(name), json.dumps(kwargs, sort_keys=True))
        if key not in self._shapes:
            self._shapes[key] = importlib.import_module(self.weights_module).shapes_of(name, **kwargs)
        return dict(self._shapes[key])

    def _pretrained_state(self, name, path, kwargs, state=None):
        """:func:`common.formats.state_for_model` of checkpoint ``path`` (``state``: as read
        already) for model ``name`` built here with ``kwargs``: ``(state, kwargs, left)``."""
        from .formats import state_for_model
        return state_for_model(path, self.framework, name, kwargs, lambda kw: self.shapes(name, **kw),
                               state=state)

    def _load_weights(self, model, state, left):
        return importlib.import_module(self.weights_module).load_weights(model, state, left)

    def create_model(self, name, pretrained=None, **kwargs):
        """Build model ``name`` with the keyword arguments of its constructor.

        With ``pretrained`` (a checkpoint of any supported format, written by any of the
        three frameworks), its weights are loaded, converted on the fly, and the model is
        returned in eval mode; ``num_classes`` defaults to the checkpoint's, and a different
        one keeps every tensor but the classifier's, which keeps its initialisation."""
        constructor = self._constructor(name)
        if pretrained is None:
            return constructor(**kwargs)
        state, kwargs, left = self._pretrained_state(name, pretrained, kwargs)
        return self._load_weights(constructor(**kwargs), state, left)

    def load_checkpoint(self, model, name, path, **kwargs):
        """Put the weights of checkpoint ``path`` (any format, written by any framework) into
        ``model``, registered model ``name`` already built and initialised with ``kwargs``
        (``num_classes`` included): every tensor, or every tensor but the classifier's when
        ``num_classes`` differs from the checkpoint's (the classifier keeps its
        initialisation). Returns the names of the tensors left. A PyTorch or Paddle model
        is left in eval mode, as ``create_model(pretrained=...)`` returns it."""
        self._constructor(name)
        state, _, left = self._pretrained_state(name, path, kwargs)
        self._load_weights(model, state, left)
        return left

    def _resolve(self, path, kwargs):
        """``(name, kwargs, state)``: :meth:`resolve_checkpoint`'s answer and the checkpoint
        as read to identify it (None when the model card named the model)."""
        from .convert import canonical_shapes, to_canonical
        from .formats import format_of, identify, names_of, read_state
        from .specs import read_model_card
        card = read_model_card(path)
        if card is not None:
            return card["model"], {**card.get("kwargs", {}), **kwargs}, None
        state = read_state(path)
        canonical = to_canonical(state, names_of(format_of(path)))
        name, found = identify(canonical, self.list_models(), lambda n, kw: canonical_shapes(
            self.shapes(n, **kw), self.framework), {k: v for k, v in kwargs.items() if k != "num_classes"})
        return name, {**found, **kwargs}, state

    def resolve_checkpoint(self, path, **kwargs):
        """``(name, kwargs)`` of the model a checkpoint holds: from the model card beside
        ``path`` (``model.json``), else identified from the tensors (``num_classes`` read off
        the classifier); ``kwargs`` override them."""
        return self._resolve(path, kwargs)[:2]

    def load_model(self, path, **kwargs):
        """The model a checkpoint holds (:meth:`resolve_checkpoint`), with its weights, in
        eval mode; ``kwargs`` override the card's (``num_classes=N`` to fine-tune to another
        number of classes). The file is read once."""
        name, kwargs, state = self._resolve(path, kwargs)
        state, kwargs, left = self._pretrained_state(name, path, kwargs, state)
        return self._load_weights(self._constructor(name)(**kwargs), state, left)
