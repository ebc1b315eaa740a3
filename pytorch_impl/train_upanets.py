"""Train UPANets in PyTorch with the reference recipe (see ``common/upanets_recipe.py``).

    python -m pytorch_impl.train_upanets --dataset cifar10 --data-dir ../shared/data/cifar10-mini
    torchrun --nproc_per_node 4 -m pytorch_impl.train_upanets --dataset cifar10 --data-dir ...

Writes ``model-best.pth`` / ``model-last.pth`` (``model.state_dict()`` alone), the optimizer
state ``train-state.pth`` and ``train-state.json`` into the run folder; ``--resume`` continues.
Under ``torchrun`` it trains with DistributedDataParallel
(:func:`pytorch_impl.session.join_processes`): ``--batch-size`` is the global batch, each
process takes its share of every batch, and process 0 writes the run folder.
"""

import torch
import torch.nn.functional as F

from common import upanets_recipe
from common.processes import Processes
from pytorch_impl import create_model
from pytorch_impl.session import Placement, RunFiles, add_device_args, join_processes


class Session(RunFiles):
    """UPANets' recipe in PyTorch, for :func:`common.fit.fit`, on ``--device`` in
    ``--amp``'s precision (:class:`pytorch_impl.session.Placement`); ``model`` holds the
    weights, ``net`` runs them (DistributedDataParallel under ``torchrun``)."""

    def __init__(self, model, args, processes=Processes()):
        self.placement = Placement(args, processes)
        self.model = model
        self.net = self.placement.parallel(model)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=args.lr,
                                         momentum=upanets_recipe.MOMENTUM, weight_decay=args.wd)

    def train_batch(self, images, labels, lr, epoch, batch):
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.placement.tensor(images), self.placement.tensor(labels)
        self.net.train()
        self.optimizer.zero_grad()
        with self.placement.autocast():
            logits = self.net(x)
            loss = F.cross_entropy(logits.float(), y)
        self.placement.backward(loss, self.optimizer)
        return loss.item() * len(y), logits.argmax(1).cpu().numpy()

    @torch.no_grad()
    def eval_batch(self, images, labels):
        x, y = self.placement.tensor(images), self.placement.tensor(labels)
        self.net.eval()
        logits = self.net(x)
        return F.cross_entropy(logits, y, reduction="sum").item(), logits.argmax(1).cpu().numpy()


def main(argv=None):
    args = upanets_recipe.parse("pytorch", argv, add_device_args)
    with join_processes(args) as processes:
        return upanets_recipe.train("pytorch", args, create_model, Session, torch.manual_seed,
                                    lambda model: sum(p.numel() for p in model.parameters()),
                                    processes, argv)


if __name__ == "__main__":
    main()
