"""Train UPANets in PyTorch with the reference recipe (see ``common/upanets_recipe.py``).

    python -m pytorch_impl.train_upanets --dataset cifar10 --data-dir ../shared/data/cifar10-mini

Writes ``model-best.pth`` / ``model-last.pth`` (``model.state_dict()`` alone), the optimizer
state ``train-state.pth`` and ``train-state.json`` into the run folder; ``--resume`` continues.
"""
import os

import torch
import torch.nn.functional as F

from common import runs, upanets_recipe
from common.fit import fit
from pytorch_impl import create_model
from pytorch_impl.data import to_tensors
from pytorch_impl.session import RunFiles


class Session(RunFiles):
    """UPANets' recipe in PyTorch, for :func:`common.fit.fit`."""

    def __init__(self, model, args):
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=args.lr,
                                         momentum=upanets_recipe.MOMENTUM, weight_decay=args.wd)

    def train_batch(self, images, labels, lr, epoch, batch):
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = to_tensors((images, labels))
        self.model.train()
        self.optimizer.zero_grad()
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        self.optimizer.step()
        return loss.item() * len(y), logits.argmax(1).numpy()

    @torch.no_grad()
    def eval_batch(self, images, labels):
        x, y = to_tensors((images, labels))
        self.model.eval()
        logits = self.model(x)
        return F.cross_entropy(logits, y, reduction="sum").item(), logits.argmax(1).numpy()


def main(argv=None):
    args = upanets_recipe.parse("pytorch", argv)
    torch.manual_seed(args.seed)
    train, test, train_loader, test_loader = runs.build_loaders(args, *args.transforms)
    log_dir = runs.default_log_dir(args, f"pytorch-{args.model}")
    log = runs.RunLog(log_dir, "pytorch_upanets", resume=args.resume)
    model = create_model(args.model, num_classes=len(train.classes), img_size=args.img_size,
                         blocks=args.blocks)
    log.info("%s on %s (%d train, %d test images), %d parameters, run folder %s", args.model,
             args.dataset, len(train), len(test), sum(p.numel() for p in model.parameters()),
             os.path.abspath(log_dir))
    try:
        result = fit(args, log, Session(model, args), train_loader, test_loader,
                     upanets_recipe.lr_at(args))
        log.info("best test accuracy %.4f", result.best_acc)
    finally:
        log.close()


if __name__ == "__main__":
    main()
