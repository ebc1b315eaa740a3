"""The pieces of a Paddle train session (see ``common/fit.py``): what it writes to and reads
from its run folder (the model's weights alone, ``.pdparams``, and the optimizer state,
``.pdopt``, under the parameters' structural names: :mod:`paddle_impl.optim_state`), where it
runs (``--device``; one process, or one per device under ``python -m
paddle.distributed.launch``: :func:`join_processes`), in what precision (``--amp``) and how
it steps (:class:`Placement`), and the soft-target loss of the recipes that train with dense
(smoothed, mixed) targets.

Several processes (Paddle 3.3.1's launcher runs a script path or a program, not ``-m``, so
the interpreter comes after it)::

    python -m paddle.distributed.launch --nproc_per_node 2 python -m paddle_impl.train_san ...
    python -m paddle.distributed.launch --devices 0,1,2,3 python -m paddle_impl.train_san ...
    python -m paddle.distributed.launch --master HOST:PORT --nnodes 2 --devices 0,1,2,3 \
        python -m paddle_impl.train_san ...           # the same line on every machine

The first runs on CPUs (gloo), the others on GPUs (nccl). Each process gets
``OMP_NUM_THREADS=1`` from the launcher (importing Paddle sets it there): ``--threads`` gives
more."""
import contextlib
import os
import re

import paddle
import paddle.distributed as dist

from common.checkpoint import atomic_path, load_pdparams
from common.convert import match_state
from common.processes import Processes
from common.runs import refuse
from paddle_impl import optim_state
from paddle_impl.weights import model_shapes


class RunFiles:
    """Checkpoint methods of a session that has ``model`` and ``optimizer``."""
    weights_ext, optimizer_ext = "pdparams", "pdopt"

    def save_weights(self, path):
        with atomic_path(path) as tmp:
            paddle.save(self.model.state_dict(), tmp)

    def load_weights(self, path):
        state = load_pdparams(path)
        match_state(state, model_shapes(self.model), path)
        self.model.set_state_dict(state)

    def save_optimizer(self, path):
        optim_state.save(self.model, self.optimizer, path)

    def load_optimizer(self, path):
        optim_state.load(self.model, self.optimizer, path)


def soft_cross_entropy(logits, targets, reduction="mean"):
    """Batch mean (or, with ``reduction="sum"``, the sum: Gluon's per-sample losses, as its
    backward sees them) of ``sum(-targets * log_softmax(logits))``; with
    :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    ``(1 - e) * nll + e * mean_k(-log p_k)``.

    The log-probabilities are ``logits - logsumexp(logits)``: Paddle's CPU
    ``F.log_softmax`` (3.3.1) clips ``logits - max`` at -64, which changes the loss and its
    gradient once the logits of a row spread wider than 64 (it happens in the first
    iterations with Paddle's default initialisation)."""
    log_p = logits - paddle.logsumexp(logits, axis=1, keepdim=True)
    per_sample = (targets * log_p).sum(axis=1)
    return -(per_sample.sum() if reduction == "sum" else per_sample.mean())


DEVICE = re.compile(r"cpu|gpu(:\d+)?")
NO_CPU_AMP = (f"--amp: Paddle {paddle.__version__} has no mixed precision on the CPU "
              f"(paddle.amp.auto_cast runs float32 there, and conv2d has no bfloat16 CPU "
              f"kernel); use a GPU (--device gpu)")


def add_device_args(parser):
    """The Paddle train scripts' flags for where and in what precision they run."""
    g = parser.add_argument_group("device and precision")
    g.add_argument("--device", default=None,
                   help="cpu, gpu or gpu:N (default: gpu when Paddle is built with CUDA and sees "
                        "a GPU, else cpu); under paddle.distributed.launch each process runs on "
                        "the device the launcher gives it")
    g.add_argument("--amp", action="store_true",
                   help="mixed precision on a GPU: paddle.amp.auto_cast (O1) to float16 with a "
                        "GradScaler; the weights and checkpoints stay float32 (not on the CPU: "
                        "Paddle has no CPU autocast)")
    return parser


def default_device():
    """The first GPU when this Paddle is built with CUDA and sees one, else the CPU."""
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return "gpu:0"
    return "cpu"


def check_device(device):
    """``device`` as ``paddle.set_device`` names it, or one line and exit status 2 when it is
    not a name or not a device this Paddle has."""
    if not DEVICE.fullmatch(device):
        refuse(f"--device {device}: expected cpu, gpu or gpu:N")
    if device == "cpu":
        return device
    if not paddle.device.is_compiled_with_cuda():
        refuse(f"--device {device}: this Paddle is built without CUDA (CPU only)")
    index, count = int(device.partition(":")[2] or 0), paddle.device.cuda.device_count()
    if index >= count:
        refuse(f"--device {device}: Paddle sees {count} GPU(s)")
    return f"gpu:{index}"


def all_reduce(array):
    """The sum of a numpy ``array`` over the processes."""
    total = paddle.to_tensor(array)
    dist.all_reduce(total)
    return total.numpy()


@contextlib.contextmanager
def join_processes(args):
    """This process's place (:class:`common.processes.Processes`) in a ``python -m
    paddle.distributed.launch`` run (``PADDLE_TRAINERS_NUM`` > 1: gloo on CPUs, nccl on
    GPUs, one per process, on the device the launcher gives it, which ``--device`` may name
    but not change), or a single process on ``--device``, by default :func:`default_device`;
    Paddle's tensors go there from now on. A device that cannot be used, or ``--amp`` on the
    CPU, ends the run with one line and exit status 2. The processes leave their group on
    exit."""
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if world == 1:
        device = check_device(args.device or default_device())
        paddle.set_device(device)
        processes = Processes(device=device)
    else:
        dist.init_parallel_env()
        device = paddle.get_device()
        processes = Processes(dist.get_rank(), world, device, all_reduce)
    try:
        if args.device not in (None, device, device.partition(":")[0]):
            refuse(f"--device {args.device}: paddle.distributed.launch gave this "
                   f"process {device} (choose the devices with the launcher's --devices)")
        if args.amp and device == "cpu":
            refuse(NO_CPU_AMP)
        yield processes
    finally:
        if world > 1:
            dist.destroy_process_group()


def running_state(model):
    """The tensors of ``model`` that a training forward updates and no optimizer does:
    BatchNorm's running statistics (Paddle keeps them as parameters that take no gradient)
    and any buffers."""
    return [p for p in model.parameters() if p.stop_gradient] + model.buffers()


class DataParallel(paddle.DataParallel):
    """``paddle.DataParallel`` (every process starts from process 0's weights; the backward
    averages the gradients over the processes) whose first forward without gradients after
    training, an evaluation, first hands every process process 0's :func:`running_state`,
    which each process updates from its own share of the batches. As with torch's DDP, the
    metrics are then those of the weights process 0 saves, and the same after ``--resume``,
    where every process loads process 0's checkpoint."""

    def __init__(self, layers):
        super().__init__(layers)
        self.state_differs = False

    def forward(self, *inputs, **kwargs):
        if paddle.is_grad_enabled():
            self.state_differs = True
        elif self.state_differs:
            for tensor in running_state(self._layers):
                dist.broadcast(tensor, src=0)
            self.state_differs = False
        return super().forward(*inputs, **kwargs)


class Placement:
    """How a session runs its model in this process of ``processes`` (on the device
    :func:`join_processes` set): through :class:`DataParallel` when several processes
    train, and, with ``--amp``, a training step's forward under ``paddle.amp.auto_cast``
    (O1: float16 where Paddle's lists allow, float32 weights) and its backward through a
    ``GradScaler``. Without ``--amp`` both are off: the same code path on every device."""

    def __init__(self, args, processes):
        self.world, self.amp = processes.world, bool(args.amp)
        self.scaler = paddle.amp.GradScaler(enable=self.amp)

    def module(self, model):
        """What runs ``model``: itself, or its :class:`DataParallel` in several processes."""
        return model if self.world == 1 else DataParallel(model)

    def autocast(self):
        return paddle.amp.auto_cast(enable=self.amp, level="O1", dtype="float16")

    def step(self, loss, optimizer):
        """The backward of ``loss`` and the optimizer's step, through the scaler (which skips
        a float16 step whose gradients overflowed), then the gradients cleared."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.clear_grad()

    def train_step(self, model, optimizer, images, targets, lr):
        return train_step(model, optimizer, images, targets, lr, self)


def train_step(model, optimizer, images, targets, lr, placement=None):
    """One step of ``optimizer`` at learning rate ``lr`` on the soft-target loss, in the
    targets' precision (logits leave autocast), under ``placement``'s precision (none: a
    plain backward and step); returns (loss, logits)."""
    optimizer.set_lr(lr)
    with placement.autocast() if placement is not None else contextlib.nullcontext():
        logits = model(images).astype(targets.dtype)
    loss = soft_cross_entropy(logits, targets)
    if placement is None:
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
    else:
        placement.step(loss, optimizer)
    return loss, logits
