"""Train a SAN (pytorch_impl/models/san.py) with the reference recipe of hszhao/SAN: SGD
(momentum 0.9, weight decay 1e-4 on every parameter), learning rate 0.1 with a cosine decay
per epoch, label smoothing 0.1, random-resized-crop 224 and flip, centre crop for validation;
top-1 and top-5 accuracy (flags, configs, loaders and the run in common/san_recipe.py).

    python -m pytorch_impl.train_san                      # embedded digits, 32x32, smoke run
    python -m pytorch_impl.train_san --config pytorch_impl/configs/san10_pairwise.yaml \\
        --data-dir /data/ILSVRC2012                       # ImageNet folders train/ and val/
    torchrun --nproc_per_node 8 -m pytorch_impl.train_san --config ... --data-dir ...

Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel (nccl on GPUs,
gloo on CPUs; :func:`pytorch_impl.session.join_processes`): ``--batch-size`` is the global
batch, each process takes its share of every batch, and process 0 writes the run folder:
``train.log``, ``metrics.jsonl``, TensorBoard scalars, ``model-last.pth`` /
``model-best.pth`` (weights only), the optimizer state ``train-state.pth`` and
``train-state.json`` (epoch, best accuracy) for ``--resume``.

At 32x32 (digits, CIFAR) the default kernels are (3, 3, 3, 3, 1) (see common/san_recipe.py).
"""
import torch

from common import san_recipe
from pytorch_impl import create_model
from pytorch_impl.session import (Placement, RunFiles, add_device_args, join_processes,
                                  soft_cross_entropy)


class Session(RunFiles, san_recipe.Session):
    """The recipe's session (:class:`common.san_recipe.Session`) in PyTorch, on the
    process's device in ``--amp``'s precision (:class:`pytorch_impl.session.Placement`);
    under ``torchrun`` it trains and evaluates through DistributedDataParallel, whose first
    forward after training hands every process the BatchNorm statistics of process 0: the
    metrics are those of the weights it saves."""
    no_grad = staticmethod(torch.no_grad)
    loss = staticmethod(soft_cross_entropy)

    def place(self, model, processes):
        self.placement = Placement(self.args, processes)
        return self.placement.parallel(model)

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


def main(argv=None):
    args = san_recipe.parse_args(__doc__.split("\n\n")[0], argv, add_device_args)
    with join_processes(args) as processes:
        return san_recipe.train("pytorch", args, create_model, Session, torch.manual_seed,
                                lambda model: sum(p.numel() for p in model.parameters()), processes,
                                argv)


if __name__ == "__main__":
    main()
