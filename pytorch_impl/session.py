"""The pieces of a PyTorch train session (see ``common/fit.py``): what it writes to and reads
from its run folder (``model.state_dict()`` alone and ``optimizer.state_dict()``, both
``.pth``, read onto the CPU and copied to the model's device), the processes it runs in
(:func:`join_processes`: one, or those ``torchrun`` starts, trained through
DistributedDataParallel), where it runs and in what precision (:class:`Placement`:
``--device``, ``--amp``, ``--channels-last``, ``--sync-bn``, ``--compile``), and the
soft-target step of the recipes that train with dense (smoothed, mixed) targets."""
import argparse
import contextlib
import functools
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from common.checkpoint import atomic_path
from common.convert import match_state, upgrade_names
from common.processes import Processes
from common.runs import refuse
from pytorch_impl.layers import compiler_present
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


def add_device_args(parser, channels_last=False):
    """The PyTorch train scripts' flags for where, in what precision and how many processes
    they run; ``channels_last``: the script's default activation layout."""
    g = parser.add_argument_group("device and precision")
    g.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: cuda when a GPU is present, else cpu); "
                        "under torchrun cpu or cuda: each process takes the GPU of its LOCAL_RANK")
    g.add_argument("--amp", action="store_true",
                   help="mixed precision: autocast to bfloat16 on the CPU, to float16 with a "
                        "GradScaler on CUDA; the weights and checkpoints stay float32")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=channels_last,
                   help="NHWC activations (faster convolutions on many CPUs and GPUs)")
    g.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on GPUs: BatchNorm statistics of the whole global batch "
                        "(torch.nn.SyncBatchNorm) instead of each process's share")
    g.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (inductor, CPU and CUDA): the first "
                        "batches of each mode compile, the later ones run fused kernels")
    return parser


def compiled(module, device):
    """``torch.compile(module)`` for ``device``: the same parameters and results within
    float32 round-off, computed by the kernels inductor generates (for the CPU it builds them
    with a C++ compiler, without which it ends with one line). Random operations (dropout)
    draw from torch's own generator as in eager mode (inductor's ``fallback_random``), so a
    seed gives the same masks compiled or not. ``module`` keeps the weights."""
    if torch.device(device).type == "cpu" and not compiler_present("cpu"):
        refuse("--compile: torch.compile builds its CPU kernels with a C++ compiler, and "
               "none (g++, c++ or $CXX) is on the PATH")
    from torch._inductor import config
    config.fallback_random = True
    return torch.compile(module)


def cuda_device(name, index):
    """CUDA device ``index`` (``--device name``), or one line when this machine lacks it."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        refuse(f"--device {name}: no CUDA device is available")
    if index >= count:
        refuse(f"--device {name}: this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


def single_device(args):
    """The device of a single process: ``--device``, by default the first GPU when there is
    one, else the CPU."""
    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        refuse(f"--device {name}: not cpu, cuda or cuda:N")
    return device if device.type == "cpu" else cuda_device(name, device.index or 0)


def launched_device(args):
    """The device of a process that ``torchrun`` started: the CPU with ``--device cpu`` (or
    without a GPU), else the GPU of its ``LOCAL_RANK``."""
    if args.device not in (None, "cpu", "cuda"):
        refuse(f"--device {args.device}: under torchrun each process takes the "
                         f"GPU of its LOCAL_RANK; give --device cuda or cpu")
    if args.device == "cpu" or (args.device is None and not torch.cuda.is_available()):
        return torch.device("cpu")
    return cuda_device(args.device or "cuda", int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce(array, device):
    """The sum of a numpy ``array`` over the processes."""
    total = torch.from_numpy(array).to(device)
    dist.all_reduce(total)
    return total.cpu().numpy()


@contextlib.contextmanager
def join_processes(args):
    """This process's place (:class:`common.processes.Processes`) while the run lasts: under
    ``torchrun`` (``WORLD_SIZE`` > 1) one of its processes, joined in a process group (gloo
    on the CPU, nccl on the GPUs, one per process) that is left at the end; else a single
    process on ``--device``. ``--sync-bn`` on the CPU ends with one line: torch's
    SyncBatchNorm refuses CPU tensors."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = single_device(args) if world == 1 else launched_device(args)
    if args.sync_bn and device.type == "cpu":
        refuse("--sync-bn: torch's SyncBatchNorm runs on GPUs only (on the CPU "
                         "it raises 'SyncBatchNorm expected input tensor to be on GPU or XPU')")
    if world == 1:
        yield Processes(device=str(device))
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Processes(dist.get_rank(), world, str(device),
                        functools.partial(all_reduce, device=device))
    finally:
        dist.destroy_process_group()


def sync_batch_norm(model):
    """``model`` with its BatchNorm layers turned into ``torch.nn.SyncBatchNorm`` (in a
    process group, training statistics over every process's share; the same parameters,
    buffers and checkpoint names). The layers of ``pytorch_impl.layers`` keep no
    ``num_batches_tracked``, which SyncBatchNorm counts in: they get one that checkpoints
    leave out. A layer that updates its running variance with the biased batch variance
    (a port of a Gluon model) ends the run with one line: SyncBatchNorm's is unbiased."""
    biased = [name for name, m in model.named_modules() if getattr(m, "biased_var", False)]
    if biased:
        refuse(f"--sync-bn: torch's SyncBatchNorm updates the running variance "
                         f"with the unbiased batch variance; this model's {len(biased)} BatchNorm "
                         f"layers (first: {biased[0]}) keep MXNet's biased one")
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, torch.nn.SyncBatchNorm) and module.track_running_stats \
                and module.num_batches_tracked is None:
            module.register_buffer("num_batches_tracked", torch.zeros(
                (), dtype=torch.long, device=module.running_mean.device), persistent=False)
    return model


class Placement:
    """Where a session runs and in what precision, for this process of ``processes``
    (``--device`` in a single process, by default the GPU when there is one; under
    ``torchrun`` the device :func:`join_processes` gave it): moves the model and every
    batch, runs a training step's forward under autocast (``--amp``) and its backward
    through a GradScaler (float16 only: bfloat16 has float32's range), and runs the model
    through DistributedDataParallel when several processes train it and through
    torch.compile with ``--compile``. The same code path on CPU and GPU."""

    def __init__(self, args, processes=Processes()):
        self.device = torch.device(processes.device) if processes.world > 1 else single_device(args)
        self.world, self.sync_bn, self.compile = processes.world, args.sync_bn, args.compile
        self.amp = None if not args.amp else \
            torch.bfloat16 if self.device.type == "cpu" else torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.layout = torch.channels_last if args.channels_last else torch.contiguous_format

    def module(self, model):
        return model.to(device=self.device, memory_format=self.layout)

    def parallel(self, model):
        """``model`` on this device in this layout, and the module that runs it: ``model``
        itself in a single process; under several, ``model`` (its BatchNorm synchronised
        with ``--sync-bn``: :func:`sync_batch_norm`) in DistributedDataParallel, which
        averages the gradients over the processes and gives every process the buffers of
        process 0 before each training forward; with ``--compile`` that module runs through
        :func:`compiled`. ``model`` keeps the weights (checkpoints without DDP's ``module.``
        or torch.compile's ``_orig_mod.`` prefix)."""
        if self.world > 1 and self.sync_bn:
            sync_batch_norm(model)
        net = self.module(model)
        if self.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device] if self.device.type == "cuda" else None)
        return compiled(net, self.device) if self.compile else net

    def tensor(self, array):
        tensor = torch.from_numpy(array).to(self.device)
        return tensor.contiguous(memory_format=self.layout) if tensor.dim() == 4 else tensor

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def backward(self, loss, optimizer):
        """``loss.backward()`` and the optimizer's step, scaled when float16 needs it (the
        scaler unscales the gradients before ``optimizer.step()`` and skips a step whose
        gradients are not finite, whatever the optimizer)."""
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
