"""The pieces of a PyTorch train session (see ``common/fit.py``): what it writes to and reads
from its run folder (``model.state_dict()`` alone and ``optimizer.state_dict()``, both
``.pth``, read onto the CPU and copied to the model's device), where it runs and in what
precision (:class:`Placement`: ``--device``, ``--amp``, ``--channels-last``), and the
soft-target step of the recipes that train with dense (smoothed, mixed) targets."""
import contextlib

import torch
import torch.nn.functional as F

from common.checkpoint import atomic_path
from common.convert import match_state, upgrade_names
from pytorch_impl.weights import model_shapes


class RunFiles:
    """Checkpoint methods of a session that has ``model`` and ``optimizer``."""
    weights_ext = optimizer_ext = "pth"

    def save_weights(self, path):
        with atomic_path(path) as tmp:
            torch.save(self.model.state_dict(), tmp)

    def load_weights(self, path):
        state = upgrade_names(torch.load(path, map_location="cpu", weights_only=True))
        match_state(state, model_shapes(self.model), path)
        self.model.load_state_dict(state)

    def save_optimizer(self, path):
        with atomic_path(path) as tmp:
            torch.save(self.optimizer.state_dict(), tmp)

    def load_optimizer(self, path):
        self.optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def soft_cross_entropy(logits, targets):
    """Batch mean of ``sum(-targets * log_softmax(logits))``; with
    :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    (= ``F.cross_entropy(label_smoothing=e)``)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def add_device_args(parser):
    """The PyTorch train scripts' flags for where and in what precision they run."""
    g = parser.add_argument_group("device and precision")
    g.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: cuda when a GPU is present, else cpu)")
    g.add_argument("--amp", action="store_true",
                   help="mixed precision: autocast to bfloat16 on the CPU, to float16 with a "
                        "GradScaler on CUDA; the weights and checkpoints stay float32")
    g.add_argument("--channels-last", action="store_true",
                   help="NHWC activations (faster convolutions on many CPUs and GPUs)")
    return parser


class Placement:
    """Where a session runs (``--device``, default the GPU when there is one) and in what
    precision (``--amp``, ``--channels-last``): moves the model and every batch, and runs a
    training step's forward under autocast and its backward through a GradScaler (float16
    only: bfloat16 has float32's range). The same code path on CPU and GPU."""

    def __init__(self, args, device=None):
        self.device = torch.device(device or args.device or
                                   ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"error: --device {self.device}: no CUDA device is available")
        self.amp = None if not args.amp else torch.bfloat16 if self.device.type == "cpu" else torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.layout = torch.channels_last if args.channels_last else torch.contiguous_format

    def module(self, model):
        return model.to(device=self.device, memory_format=self.layout)

    def tensor(self, array):
        tensor = torch.from_numpy(array).to(self.device)
        return tensor.contiguous(memory_format=self.layout) if tensor.dim() == 4 else tensor

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def backward(self, loss, optimizer):
        """``loss.backward()`` and the optimizer's step, scaled when float16 needs it."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def train_step(self, model, optimizer, images, targets, lr):
        return train_step(model, optimizer, images, targets, lr, self)


def train_step(model, optimizer, images, targets, lr, placement=None):
    """One step of ``optimizer`` at learning rate ``lr`` on the soft-target loss (in the
    targets' precision: logits leave autocast), under ``placement``'s precision; returns
    (loss, logits)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with placement.autocast() if placement is not None else contextlib.nullcontext():
        logits = model(images).to(targets.dtype)
        loss = soft_cross_entropy(logits, targets)
    optimizer.zero_grad()
    if placement is None:
        loss.backward()
        optimizer.step()
    else:
        placement.backward(loss, optimizer)
    return loss.detach(), logits.detach()
