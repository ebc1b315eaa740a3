"""Train a SAN (pytorch_impl/models/san.py) with the reference recipe of hszhao/SAN: SGD
(momentum 0.9, weight decay 1e-4 on every parameter), learning rate 0.1 with a cosine decay
per epoch, label smoothing 0.1, random-resized-crop 224 and flip, centre crop for validation;
top-1 and top-5 accuracy (flags, configs, loaders and the run in common/san_recipe.py).

    python -m pytorch_impl.train_san                      # embedded digits, 32x32, smoke run
    python -m pytorch_impl.train_san --config pytorch_impl/configs/san10_pairwise.yaml \\
        --data-dir /data/ILSVRC2012                       # ImageNet folders train/ and val/
    torchrun --nproc_per_node 8 -m pytorch_impl.train_san --config ... --data-dir ...

Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel (nccl on GPUs,
gloo on CPUs): ``--batch-size`` is the global batch, each process takes its share of every
batch, and process 0 writes the run folder: ``train.log``, ``metrics.jsonl``, TensorBoard
scalars, ``model-last.pth`` / ``model-best.pth`` (weights only), the optimizer state
``train-state.pth`` and ``train-state.json`` (epoch, best accuracy) for ``--resume``.

At 32x32 (digits, CIFAR) the default kernels are (3, 3, 3, 3, 1) (see common/san_recipe.py).
"""
import functools
import os

import torch
import torch.distributed as dist

from common import san_recipe
from common.processes import Processes
from pytorch_impl import create_model
from pytorch_impl.session import Placement, RunFiles, add_device_args, soft_cross_entropy


class Session(RunFiles, san_recipe.Session):
    """The recipe's session (:class:`common.san_recipe.Session`) in PyTorch, on the
    process's device in ``--amp``'s precision (:class:`pytorch_impl.session.Placement`);
    under ``torchrun`` it trains and evaluates through DistributedDataParallel, whose first
    forward after training hands every process the BatchNorm statistics of process 0: the
    metrics are those of the weights it saves."""
    no_grad = staticmethod(torch.no_grad)
    loss = staticmethod(soft_cross_entropy)

    def place(self, model, processes):
        self.placement = Placement(self.args, processes.device)
        self.placement.module(model)
        if processes.world == 1:
            return model
        return torch.nn.parallel.DistributedDataParallel(model)

    def tensor(self, array):
        return self.placement.tensor(array)

    def train_step(self, *step):
        return self.placement.train_step(*step)

    @staticmethod
    def numpy(tensor):
        return tensor.cpu().numpy()

    @staticmethod
    def make_optimizer(model, args):
        return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                               weight_decay=args.wd)


def all_reduce(array, device):
    """The sum of a numpy ``array`` over the processes."""
    total = torch.from_numpy(array).to(device)
    dist.all_reduce(total)
    return total.cpu().numpy()


def join_processes(args):
    """This process's place in a ``torchrun`` launch (gloo on CPUs; nccl on GPUs, one per
    process), or a single process on ``--device``, by default the first GPU, else the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if world == 1:
        return Processes(device=args.device or ("cuda" if cuda else "cpu"))
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return Processes(dist.get_rank(), world, str(device),
                                functools.partial(all_reduce, device=device))


def main(argv=None):
    args = san_recipe.parse_args(__doc__.split("\n\n")[0], argv, add_device_args)
    processes = join_processes(args)
    try:
        return san_recipe.train("pytorch", args, create_model, Session, torch.manual_seed,
                                lambda model: sum(p.numel() for p in model.parameters()), processes,
                                argv)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
