"""The pieces of a Gluon train session (see ``common/fit.py``): where it runs and in what
precision (:class:`Placement`: ``--ctx``, ``--amp``), the processes of a ``dist_sync``
launch (``--kvstore``, :func:`join_processes`), what it writes to and reads from its run
folder (:class:`RunFiles`: ``save_parameters``-format weights, float32 whatever the
precision, and the Trainer's optimizer state by parameter name, both ``.params``), its
dashboard scalars through mxboard, and the soft-target loss of the recipes that train with
dense (smoothed, mixed) targets.

Data parallelism is the original Residual Attention code's (``cifar10_train.py``): every
batch is split evenly across the contexts of ``--ctx`` (``gluon.utils.split_and_load``),
each part's per-sample losses are summed, and ``trainer.step(global batch)`` averages the
gradients that the kvstore sums: ``device`` across the contexts of a process, ``dist_sync``
(MXNet's parameter server, started by ``scripts/launch_gluon.py``) across processes too.
One context is the same code path. The Trainer updates on the workers
(``update_on_kvstore=False``): the servers only sum gradients, so they need none of this
project's optimizers (``gluon_impl.torch_optim``), and the optimizer state stays in the
process that saves it. Each context of each worker normalises its part of a batch with
that part's BatchNorm statistics (as every data-parallel BatchNorm without synchronisation),
and updates its own running statistics; their mean over all contexts and workers replaces
them before each evaluation (:meth:`Placement.average_statistics`), so that the metrics are
those of the weights saved.
"""
import argparse
import contextlib
import functools
import os
import re

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from common.checkpoint import load_gluon_params, save_gluon_params
from common.convert import match_state, upgrade_names
from common.processes import Processes
from common.runs import refuse
from gluon_impl import weights
from gluon_impl.layers import TorchRunningVariance

# what a dist_sync worker reads to join the others (set by scripts/launch_gluon.py)
DMLC_VARIABLES = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER",
                  "DMLC_NUM_WORKER")
SUMS_KEY = 1 << 24  # the first kvstore key of all_reduce (the Trainer's are 0, 1, ...)
CPU_AMP_REFUSAL = (
    "--amp needs a GPU: MXNet 1.9.1 has no float16 kernels on the CPU ('FP16 gemm on cpu not "
    "implemented!') and runs bfloat16 only through oneDNN on AVX-512 CPUs (elsewhere: 'could "
    "not create a primitive descriptor iterator'); train in float32 on the CPU")


def context_names(text):
    """``--ctx`` at parse time: ``cpu``, devices ``gpu0,gpu1,...`` (the original's plain ids
    ``0,1`` too) or ``cpu0,cpu1,...`` (several CPU contexts: the split path on one CPU);
    returns the canonical spelling. A GPU this MXNet does not see is refused."""
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    found = [re.fullmatch(r"(cpu|gpu)?(\d*)", s) for s in names]
    if not names or not all(m and (m[2] or m[1] == "cpu") for m in found):
        raise argparse.ArgumentTypeError(
            f"must be 'cpu', 'gpu0,gpu1,...' (or GPU ids '0,1') or 'cpu0,cpu1,...', got {text!r}")
    devices = [(m[1] or "gpu", int(m[2] or 0)) for m in found]
    if len({kind for kind, _ in devices}) > 1 or len(set(devices)) < len(devices):
        raise argparse.ArgumentTypeError(f"{text}: give distinct devices of one kind")
    gpus = mx.context.num_gpus()
    missing = [f"gpu{i}" for kind, i in devices if kind == "gpu" and i >= gpus]
    if missing:
        raise argparse.ArgumentTypeError(f"{text}: this MXNet sees {gpus} GPU(s), no {missing[0]}")
    return "cpu" if names == ["cpu"] else ",".join(f"{kind}{i}" for kind, i in devices)


def contexts(names):
    """The ``mx.Context`` list of a canonical ``--ctx`` (None: every GPU, else the CPU)."""
    if names is None:
        return [mx.gpu(i) for i in range(mx.context.num_gpus())] or [mx.cpu()]
    return [mx.Context(name.rstrip("0123456789"), int(name.lstrip("cpugpu") or 0))
            for name in names.split(",")]


def add_device_args(parser, amp_aliases=()):
    """The Gluon train scripts' flags for where, in what precision and in how many processes
    they run; ``amp_aliases`` are further spellings of ``--amp`` (the Residual Attention
    script's ``--float16``)."""
    g = parser.add_argument_group("devices, precision and processes")
    g.add_argument("--ctx", type=context_names, default=None,
                   help="cpu, or gpu0,gpu1,... (GPU ids 0,1 too; cpu0,cpu1 splits on the CPU): "
                        "each batch is split evenly across them (default: every GPU, else cpu)")
    g.add_argument("--amp", *amp_aliases, dest="amp", action="store_true",
                   help="the network in float16 with float32 master weights in the optimizer "
                        "(multi_precision), GPUs only; checkpoints stay float32")
    g.add_argument("--kvstore", choices=("device", "dist_sync"), default="device",
                   help="how gradients are summed: across this process's contexts (device), or "
                        "across the workers of scripts/launch_gluon.py too (dist_sync)")
    return parser


def check_device_args(args):
    """Flag combinations that cannot run, refused with one line before anything is written:
    ``--amp`` on the CPU or with ``--dtype float64``, a batch that the contexts cannot share."""
    where = contexts(args.ctx)
    if args.amp and where[0].device_type == "cpu":
        refuse(CPU_AMP_REFUSAL)
    if args.amp and getattr(args, "dtype", "float32") != "float32":
        refuse(f"--amp computes in float16; it cannot be combined with --dtype {args.dtype}")
    if args.batch_size % len(where):
        refuse(f"--batch-size {args.batch_size} must be a multiple of the {len(where)} contexts "
             f"of --ctx {','.join(map(str, where))}")
    return args


@functools.lru_cache(maxsize=None)
def dist_kvstore():
    """This worker's ``dist_sync`` kvstore (one per process: it joins the parameter server
    that ``DMLC_*`` names)."""
    return mx.kv.create("dist_sync")


def init_keys(kv, keys, values):
    """``kv.init(keys, values)``, returning once the servers hold every key. MXNet 1.9.1's
    dist kvstore sends worker 0's initial values without waiting when they are in CPU
    memory (it sends the array itself and waits on an unused copy buffer), then meets the
    other workers at a barrier; a worker's first pull could reach the server before the value
    (the server aborts: 'init 0 first'), or its first push be taken for the value. So each
    worker waits here for its engine's operations, worker 0's sends among them, and all meet
    at a second barrier."""
    kv.init(keys, values)
    mx.nd.waitall()
    kv._barrier()


def init_trainer_kvstore(trainer):
    """Initialise ``trainer``'s dist kvstore keys now, as its first ``step`` would (keys 0,
    1, ... with worker 0's weights, which every worker then pulls), but through
    :func:`init_keys`."""
    trainer._init_kvstore()
    params = trainer._params
    keys = list(range(len(params)))
    init_keys(trainer._kvstore, keys, [p.list_data()[0] for p in params])
    trainer._kvstore.pull(keys, [p.list_data() for p in params])
    trainer._params_to_init = []


def kvstore_all_reduce(kv, array):
    """The sum of a numpy ``array`` over the workers, through ``kv``: a pushpull of the key of
    the array's shape (keys from :data:`SUMS_KEY` on, in the order of first use, which every
    worker shares; each initialises its key at its first use), in float32: with float64
    arrays MXNet 1.9.1's servers returned sums rounded to float32, and in 2 of 7 training
    runs wrong ones (the epoch's validation loss; none in the float32 runs since)."""
    keys = kv.__dict__.setdefault("sum_keys", {})
    if array.shape not in keys:
        keys[array.shape] = SUMS_KEY + len(keys)
        init_keys(kv, [keys[array.shape]], [mx.nd.zeros(array.shape)])
    total = mx.nd.array(array, dtype=np.float32)
    kv.pushpull(keys[array.shape], total, out=total)
    return total.asnumpy().astype(array.dtype)


def join_processes(args):
    """This process's place (:class:`common.processes.Processes`): with ``--kvstore
    dist_sync``, worker ``kv.rank`` of ``kv.num_workers``, whose metrics are summed through
    the kvstore; otherwise the only process. ``device`` names its contexts."""
    where = ",".join(map(str, contexts(args.ctx)))
    if args.kvstore != "dist_sync":
        return Processes(device=where)
    unset = [v for v in DMLC_VARIABLES if v not in os.environ]
    if unset:
        refuse(f"--kvstore dist_sync: {', '.join(unset)} not set; start the workers with "
             f"python -m scripts.launch_gluon (see its --help for several hosts)")
    kv, parts = dist_kvstore(), len(contexts(args.ctx))
    if args.batch_size % (kv.num_workers * parts):
        refuse(f"--batch-size {args.batch_size} must be a multiple of the {kv.num_workers} workers "
             f"times the {parts} contexts of each")
    return Processes(kv.rank, kv.num_workers, where, functools.partial(kvstore_all_reduce, kv))


class Placement:
    """Where a session's model runs (``--ctx``) and in what precision (``--amp``: the
    network cast to float16, the optimizer's multi_precision float32 master weights), and
    its steps on numpy batches split across the contexts; the Trainer sums the gradients of
    the contexts and of the ``dist_sync`` workers (:func:`join_processes`)."""

    def __init__(self, args, processes=Processes()):
        self.contexts = contexts(args.ctx)
        self.amp, self.world, self.all_reduce = args.amp, processes.world, processes.all_reduce
        self.kvstore = dist_kvstore() if args.kvstore == "dist_sync" else "device"
        self.trained = False  # since the running statistics were last averaged
        self.running_variance = None  # set by module(model, hybridize=True)

    @property
    def ctx(self):
        return self.contexts[0]

    def module(self, model, hybridize=False):
        """``model`` (initialised) on every context, in float16 with ``--amp``. With
        ``hybridize`` its steps run hybridized from the first one on, and its BatchNorms of
        torch's running-variance rule are corrected after each training step
        (:class:`gluon_impl.layers.TorchRunningVariance`, which counts their values per
        sample from one imperative pass of the first batch's first image)."""
        model.collect_params().reset_ctx(self.contexts)
        if self.amp:
            model.cast("float16")
        self.running_variance = TorchRunningVariance(model) if hybridize else None
        return model

    def _hybridize(self, model, images):
        if self.running_variance is not None and self.running_variance.per_sample is None:
            self.running_variance.measure(self.split(images[:1], cast=True)[0])
            model.hybridize(static_alloc=True)

    def trainer(self, params, optimizer, options):
        """A Trainer of ``optimizer`` over the parameters of ``params`` that have gradients,
        updated on this process; with ``dist_sync`` its kvstore keys are initialised here
        (:func:`init_trainer_kvstore`). (Given the running statistics too, a Trainer
        broadcasts the first context's at its first step, over those the others computed in
        that step.)"""
        trainer = gluon.Trainer([p for p in params.values() if p.grad_req != "null"], optimizer,
                                dict(options, multi_precision=self.amp), kvstore=self.kvstore,
                                update_on_kvstore=False)
        if self.kvstore != "device":
            init_trainer_kvstore(trainer)
        return trainer

    def split(self, array, even=True, cast=False):
        """A numpy batch cut into consecutive parts on the contexts (``even``: equal parts;
        as many as it has rows when fewer); ``cast``: in the network's precision (images)."""
        dtype = "float16" if cast and self.amp else array.dtype
        where = self.contexts[:len(array)]
        return gluon.utils.split_and_load(mx.nd.array(array, ctx=where[0], dtype=dtype), where,
                                          even_split=even)

    def forward(self, model, images, targets, loss, even):
        """Per part: the logits (float32 with ``--amp``) and ``loss(logits, targets)``."""
        logits = [model(x) for x in self.split(images, even, cast=True)]
        if self.amp:
            logits = [z.astype("float32") for z in logits]
        return [loss(z, y) for z, y in zip(logits, self.split(targets, even))], logits

    def train_step(self, model, trainer, images, targets, lr, loss):
        """One step of ``trainer`` at rate ``lr`` on the per-sample ``loss(logits,
        targets)`` of every part of the batch (the gradients of this process's parts and of
        the other workers' are summed, then divided by the global batch); returns (summed
        loss, logits) as numpy."""
        trainer.set_learning_rate(lr)
        self._hybridize(model, images)
        parts = min(len(images), len(self.contexts))
        with (self.running_variance.step([len(images) // parts] * parts)
              if self.running_variance else contextlib.nullcontext()):
            with autograd.record():
                losses, logits = self.forward(model, images, targets, loss, even=True)
            autograd.backward(losses)
        trainer.step(len(images) * self.world)
        self.trained = True
        return self.gather(losses, logits)

    def eval_step(self, model, images, targets, loss):
        """(summed loss, logits) of a batch without update, as numpy; the first one after
        training first averages the running statistics (:meth:`average_statistics`)."""
        if self.trained:
            self.average_statistics(model)
        self._hybridize(model, images)
        return self.gather(*self.forward(model, images, targets, loss, even=False))

    def average_statistics(self, model):
        """Give every context of every worker the mean of their BatchNorm running statistics
        (the parameters without gradient), each computed on its part of every batch: the
        weights then evaluate and are saved as one model, and resume exactly. The statistics
        are linear in the batches' moments, so averaging once per epoch equals averaging
        after every step."""
        params = [p for p in model.collect_params().values() if p.grad_req == "null"]
        if not params:
            return
        local = np.concatenate([sum(d.asnumpy() for d in p.list_data()).ravel() for p in params])
        total = local if self.all_reduce is None else self.all_reduce(local)
        mean, start = total / (len(self.contexts) * self.world), 0
        for p in params:
            p.set_data(mx.nd.array(mean[start:start + p.data().size].reshape(p.shape),
                                   dtype=p.dtype))
            start += p.data().size
        self.trained = False

    @staticmethod
    def gather(losses, logits):
        return (sum(float(part.sum().asscalar()) for part in losses),
                np.concatenate([part.asnumpy() for part in logits]))


class RunFiles:
    """Checkpoint methods of a session that has ``model``, ``trainer`` and ``placement``.
    The weights are written as ``save_parameters`` writes them (each parameter's mean over
    the contexts), in float32 when the network runs in float16: the optimizer's float32
    master copy where it keeps one. The optimizer state leaves the master copies out (they
    are the weights), so a float32 run and an ``--amp`` run resume from each other's."""
    weights_ext = optimizer_ext = "params"

    def float32_masters(self):
        """{parameter name: the optimizer's float32 master copy} of the float16 parameters."""
        states = self.trainer._updaters[0].states
        return {name: states[i][1] for name, i in self.momentum_slots().items()
                if self.multi_precision(name) and i in states}

    def multi_precision(self, name):
        return self.placement.amp and np.dtype(self.parameters()[name].dtype) == np.float16

    def parameters(self):
        return self.model._collect_params_with_prefix()

    def save_weights(self, path):
        masters = self.float32_masters()
        state = {name: (masters[name] if name in masters else p._reduce()).asnumpy()
                 for name, p in self.parameters().items()}
        save_gluon_params({name: value.astype(np.float32) if value.dtype == np.float16 else value
                           for name, value in state.items()}, path)

    def load_weights(self, path):
        """The run's own weights (this project's older names upgraded), checked against the
        model's shapes, copied into its parameters on every context (in their dtype); the
        float32 values of float16 parameters are kept for their master copies."""
        state = upgrade_names(load_gluon_params(path))
        match_state(state, weights.model_shapes(self.model), path)
        weights.load_weights(self.model, state, ctx=self.placement.ctx)
        self.loaded = state

    def momentum_slots(self):
        """{parameter name: the index of its state in the Trainer's updaters}."""
        index = {id(p): i for i, p in enumerate(self.trainer._params)}
        return {name: index[id(p)] for name, p in self.parameters().items() if id(p) in index}

    def save_optimizer(self, path):
        """Each parameter's optimizer state under its name: one array (momentum) as
        ``<name>``, a tuple of arrays (``torchadam``'s step, m, v) as ``<name>.0``,
        ``<name>.1``, ... (without the float32 master copy of a float16 parameter)."""
        states, out = self.trainer._updaters[0].states, {}
        for name, i in self.momentum_slots().items():
            state = states.get(i)
            if self.multi_precision(name) and state is not None:
                state = state[0]
            if isinstance(state, (tuple, list)):
                out.update({f"{name}.{k}": s.asnumpy() for k, s in enumerate(state)})
            elif state is not None:
                out[name] = state.asnumpy()
        save_gluon_params(out, path)

    def load_optimizer(self, path):
        """The saved state into the updater of every context (a float16 parameter's with
        its float32 master copy, from the weights :meth:`load_weights` read)."""
        saved = upgrade_names(load_gluon_params(path))
        for updater, ctx in zip(self.trainer._updaters, self.trainer._contexts):
            def array(key, dtype=None):
                return mx.nd.array(saved[key], dtype=dtype or saved[key].dtype, ctx=ctx)

            for name, i in self.momentum_slots().items():
                if name in saved:
                    state = array(name)
                elif f"{name}.0" in saved:
                    count = sum(1 for k in saved if k.rpartition(".")[0] == name)
                    state = tuple(array(f"{name}.{k}") for k in range(count))
                else:
                    continue
                if self.multi_precision(name):
                    state = (state, mx.nd.array(self.loaded[name], dtype="float32", ctx=ctx))
                updater.states[i] = state
                updater.states_synced[i] = True


class MxboardScalars:
    """RunLog's scalar writer through mxboard (tensorboard's protobufs clash with MXNet's)."""

    def __init__(self, log_dir):
        from mxboard import SummaryWriter
        self._writer = SummaryWriter(logdir=log_dir)

    def scalar(self, tag, value, step):
        self._writer.add_scalar(tag, value, step)

    def close(self):
        self._writer.close()


def soft_cross_entropy(logits, targets, reduction="mean"):
    """Batch mean (``reduction="none"``: per sample) of ``sum(-targets * log_softmax(logits))``;
    with :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    ``(1 - e) * nll + e * mean_k(-log p_k)`` (as ``paddle_impl.session.soft_cross_entropy``)."""
    per_sample = -(targets * mx.nd.log_softmax(logits, axis=1)).sum(axis=1)
    return per_sample if reduction == "none" else per_sample.mean()


def train_step(model, trainer, images, targets, lr):
    """One step of the Gluon ``trainer`` at learning rate ``lr`` on the soft-target loss of
    NDArrays on one context (the batch mean, so the Trainer steps with 1); returns (loss,
    logits). The train scripts step through :class:`Placement`; the benchmarks time this."""
    trainer.set_learning_rate(lr)
    with autograd.record():
        logits = model(images)
        loss = soft_cross_entropy(logits, targets)
    loss.backward()
    trainer.step(1)
    return loss, logits
