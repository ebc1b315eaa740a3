"""Where a train script runs when several processes train one model (data parallel, one
process per device), framework-free.

Each framework starts the processes with its own engine: ``torchrun`` (PyTorch,
DistributedDataParallel), ``python -m paddle.distributed.launch`` (Paddle,
``paddle.DataParallel``), MXNet's ``dist_sync`` kvstore (Gluon, scheduler and servers from
``scripts/launch_gluon.py``). Whatever the engine, a run of ``world`` processes is the run
of one process with the same ``--batch-size``:

* ``--batch-size`` is the global batch; process ``rank`` takes its consecutive share of
  every batch (:class:`common.loader.ShardLoader`), augmented as one process would;
* the gradients are averaged over the processes by the engine, so every process steps its
  copy of the weights alike;
* the metrics are sums over the processes (``all_reduce``), so they cover the whole dataset;
* process 0 alone writes the run folder (:func:`common.runs.open_run`, :func:`common.fit.fit`),
  and every process reads it back on ``--resume``.

Where the computation depends on the whole batch it is each process's share that counts, as
in every data-parallel engine: BatchNorm normalises each share (PyTorch's ``--sync-bn``
normalises the global batch on GPUs), mixup mixes each share with its own reverse (same
lambda in every process), and dropout draws each process's masks from its own stream. The
Gluon scripts' several ``--ctx`` contexts in one process split the batch after mixing, as
the original ``cifar10_train.py`` did.
"""
from typing import Callable, NamedTuple, Optional


class Processes(NamedTuple):
    """This process's ``rank`` among ``world``, its device (named in the log), and
    ``all_reduce(array) -> array``, the sum over the processes (None in a single process)."""
    rank: int = 0
    world: int = 1
    device: str = "cpu"
    all_reduce: Optional[Callable] = None

    @property
    def main(self):
        """Whether this process writes the run folder."""
        return self.rank == 0
