"""One small spec per registered model, in the spirit of timm's ``pretrained_cfg``: what a
user of the model needs beside its tensors, stated once for every framework.

=============================  ==========  ======  =====================  =======  ==========
models                         native      input   mean / std             classes  classifier
=============================  ==========  ======  =====================  =======  ==========
``attention{56..452}``         gluon       224     ImageNet's             1000     ``output``
``attention{56..452}_cifar``   gluon       32      ImageNet's             10       ``output``
``alexnet``, ``alexnet_simam`` paddle      128     ImageNet's             10       ``classifier.6``
``upanets{16,32,64}``          pytorch     32      CIFAR's                10       ``linear``
``san{10,15,19}_{pair,patch}`` pytorch     224     ImageNet's             1000     ``fc``
=============================  ==========  ======  =====================  =======  ==========

Mean and std are those of the original recipe, for pixels scaled to [0, 1] (the Residual
Attention Network normalises CIFAR with ImageNet's statistics, as its ``cifar10_train.py``
does; UPANets uses the CIFAR statistics of its ``main.py``). A run trained on another dataset
records its own in the model card beside its checkpoints. ``classifier`` is the module whose
weight is ``[num_classes, features]`` in PyTorch's layout: what fine-tuning to another number
of classes re-initialises. UPANets also takes ``img_size`` (32 or 64), its input side.
"""
import json
import os
from dataclasses import dataclass

from .checkpoint import CheckpointError, atomic_open
from .data import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ModelSpec:
    """The spec of one registered model (see the module docstring)."""
    name: str
    family: str
    native: str
    input_size: int
    mean: tuple
    std: tuple
    num_classes: int
    classifier: str

    def input_side(self, **kwargs):
        """The square input side of the model built with ``kwargs``."""
        return int(kwargs.get("img_size", self.input_size))

    def classifier_names(self):
        """The PyTorch names of the classifier's tensors."""
        return (f"{self.classifier}.weight", f"{self.classifier}.bias")


def _specs():
    specs = []
    for depth in (56, 92, 128, 164, 236, 452):
        specs.append(ModelSpec(f"attention{depth}", "attention", "gluon", 224,
                               IMAGENET_MEAN, IMAGENET_STD, 1000, "output"))
        specs.append(ModelSpec(f"attention{depth}_cifar", "attention", "gluon", 32,
                               IMAGENET_MEAN, IMAGENET_STD, 10, "output"))
    for name in ("alexnet", "alexnet_simam"):
        specs.append(ModelSpec(name, "alexnet", "paddle", 128, IMAGENET_MEAN, IMAGENET_STD, 10,
                               "classifier.6"))
    for width in (16, 32, 64):
        specs.append(ModelSpec(f"upanets{width}", "upanets", "pytorch", 32, CIFAR_MEAN, CIFAR_STD, 10,
                               "linear"))
    for depth in (10, 15, 19):
        for kind in ("pairwise", "patchwise"):
            specs.append(ModelSpec(f"san{depth}_{kind}", "san", "pytorch", 224, IMAGENET_MEAN,
                                   IMAGENET_STD, 1000, "fc"))
    return {spec.name: spec for spec in specs}


SPECS = _specs()


def spec(name):
    """The :class:`ModelSpec` of registered model ``name``."""
    if name not in SPECS:
        raise KeyError(f"no model {name!r}; models: {', '.join(sorted(SPECS))}")
    return SPECS[name]


def input_size(name, **kwargs):
    """The square input side of model ``name`` built with ``kwargs``."""
    return spec(name).input_side(**kwargs)


# --------------------------------------------------------------------------- model cards
#: the model card's file name, beside a run's checkpoints
MODEL_CARD = "model.json"


def model_card(name, framework, kwargs, mean=None, std=None, classes=None, recipe=None,
               input_size=None):
    """What a later user of a checkpoint of model ``name`` needs: the registry name, the
    framework that wrote it, the constructor's ``kwargs`` (``num_classes`` included), the
    input side, the normalisation of [0, 1] pixels (the spec's unless given), the class
    names and the recipe (e.g. the train script's module). ``input_size`` is the spec's
    unless given (a run records the side its test images have)."""
    model_spec = spec(name)
    return {"model": name, "framework": framework, "kwargs": dict(kwargs),
            "num_classes": int(kwargs.get("num_classes", model_spec.num_classes)),
            "input_size": int(model_spec.input_side(**kwargs) if input_size is None else input_size),
            "mean": [float(m) for m in (model_spec.mean if mean is None else mean)],
            "std": [float(s) for s in (model_spec.std if std is None else std)],
            "classes": None if classes is None else [str(c) for c in classes],
            "recipe": recipe}


def write_model_card(folder, card):
    """Write ``card`` as ``folder/model.json``, atomically."""
    with atomic_open(os.path.join(folder, MODEL_CARD), "w") as f:
        json.dump(card, f, indent=1)
        f.write("\n")


def read_model_card(checkpoint):
    """The model card beside ``checkpoint`` (``model.json`` in its folder), or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), MODEL_CARD)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            card = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable model card ({e})") from None
    if not isinstance(card, dict) or not isinstance(card.get("model"), str):
        raise CheckpointError(f"{path}: not a model card (no 'model' name)")
    return card
