"""Train a SAN (pytorch_impl/models/san.py) with the reference recipe of hszhao/SAN: SGD
(momentum 0.9, weight decay 1e-4 on every parameter), learning rate 0.1 with a cosine decay
per epoch, label smoothing 0.1, random-resized-crop 224 and flip, centre crop for validation;
top-1 and top-5 accuracy (flags, configs and loaders in common/san_recipe.py).

    python -m pytorch_impl.train_san                      # embedded digits, 32x32, smoke run
    python -m pytorch_impl.train_san --config pytorch_impl/configs/san10_pairwise.yaml \\
        --data-dir /data/ILSVRC2012                       # ImageNet folders train/ and val/
    torchrun --nproc_per_node 8 -m pytorch_impl.train_san --config ... --data-dir ...

Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel (nccl on GPUs,
gloo on CPUs): ``--batch-size`` is the global batch, each process takes its share of every
batch, and process 0 writes the run folder: ``train.log``, ``metrics.jsonl``, TensorBoard
scalars, ``model-last.pth`` / ``model-best.pth`` (weights only) and ``train-state.pth``
(optimizer, epoch, best accuracy) for ``--resume``.

At 32x32 (digits, CIFAR) the default kernels are (3, 3, 3, 3, 1) (see common/san_recipe.py).
"""
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from common.checkpoint import atomic_path
from common.labels import smooth_uniform
from common.runs import RunLog, default_log_dir, progress
from common.san_recipe import build_loaders, parse_args
from common.schedules import cosine_lr
from pytorch_impl import create_model
from pytorch_impl.data import to_tensors


def smoothed_cross_entropy(logits, labels, eps):
    """Mean of ``sum(-target * log_softmax)`` with targets (1 - eps) one-hot + eps / K."""
    targets = torch.from_numpy(smooth_uniform(labels.cpu().numpy(), logits.shape[1], eps))
    return -(targets.to(logits) * F.log_softmax(logits, 1)).sum(1).mean()


class Meter:
    """Sums of loss, top-1 and top-5 hits and samples, reduced over the processes."""

    def __init__(self, device):
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)

    def update(self, loss, logits, labels):
        top5 = logits.topk(min(5, logits.shape[1]), 1).indices
        hits = top5 == labels[:, None]
        n = len(labels)
        self.sums += torch.tensor([loss * n, hits[:, 0].sum().item(), hits.any(1).sum().item(), n],
                                  dtype=torch.float64, device=self.sums.device)

    def result(self):
        sums = self.sums.clone()
        if dist.is_initialized():
            dist.all_reduce(sums)
        loss, top1, top5, n = sums.tolist()
        return loss / n, top1 / n, top5 / n, int(n)


def train_epoch(model, loader, optimizer, epoch, args, device):
    model.train()
    meter = Meter(device)
    total = min(len(loader), args.max_batches or len(loader))
    start = time.time()
    for b, batch in enumerate(progress(loader.epoch(epoch), total, f"train {epoch}")):
        if b == total:
            break
        images, labels = to_tensors(batch, device)
        logits = model(images)
        loss = smoothed_cross_entropy(logits, labels, args.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        meter.update(loss.item(), logits.detach(), labels)
    loss, top1, top5, n = meter.result()
    return loss, top1, top5, n / (time.time() - start)


@torch.no_grad()
def evaluate(model, loader, args, device):
    model.eval()
    meter = Meter(device)
    total = min(len(loader), args.max_batches or len(loader))
    for b, batch in enumerate(progress(loader.epoch(0), total, "val")):
        if b == total:
            break
        images, labels = to_tensors(batch, device)
        # the last global batch is padded with repeated images: count each image once
        first = b * loader.global_batch + loader.rank * loader.batch_size
        keep = min(len(labels), max(0, len(loader.dataset) - first))
        logits = model(images)
        if keep:
            meter.update(F.cross_entropy(logits[:keep], labels[:keep]).item(), logits[:keep], labels[:keep])
    return meter.result()[:3]


def save_weights(model, path):
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def setup_distributed():
    """(rank, world size, device) from torchrun's environment; a single CPU/GPU otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return rank, world, torch.device("cuda", local)
        return rank, world, torch.device("cpu")
    return rank, world, torch.device("cuda" if torch.cuda.is_available() else "cpu")


def main(argv=None):
    args = parse_args(__doc__.split("\n\n")[0], argv)
    rank, world, device = setup_distributed()
    try:
        run(args, rank, world, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run(args, rank, world, device):
    torch.manual_seed(args.seed)
    train, _, train_loader, test_loader = build_loaders(args, rank, world)
    model = create_model(args.model, num_classes=train.num_classes, layers=args.layers,
                         kernels=args.kernels).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.wd)
    log_dir = default_log_dir(args, args.model)
    state_path = os.path.join(log_dir, "train-state.pth")
    start_epoch, best_acc = 0, 0.0
    if args.resume:
        if not os.path.exists(state_path):
            raise SystemExit(f"--resume: {state_path} does not exist (nothing to resume)")
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(torch.load(os.path.join(log_dir, "model-last.pth"),
                                         map_location=device, weights_only=True))
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_acc = state["epoch"] + 1, state["best_acc"]
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    net = model.module if world > 1 else model
    log = RunLog(log_dir, args.model, resume=args.resume) if rank == 0 else None
    if log:
        log.info("%s on %s (%d images, %d classes), %d process(es) on %s, %d parameters",
                 args.model, args.dataset, len(train), train.num_classes, world, device,
                 sum(p.numel() for p in net.parameters()))
    for epoch in range(start_epoch, args.epochs):
        lr = cosine_lr(epoch, args.lr, args.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        train_loss, train_acc, train_top5, speed = train_epoch(model, train_loader, optimizer,
                                                                epoch, args, device)
        val_loss, val_acc, val_top5 = evaluate(model, test_loader, args, device)
        if not all(math.isfinite(v) for v in (train_loss, val_loss)):
            raise SystemExit(f"epoch {epoch}: the loss is not finite (lower --lr?)")
        if rank == 0:
            save_weights(net, os.path.join(log_dir, "model-last.pth"))
            if val_acc > best_acc or epoch == 0:
                best_acc = max(best_acc, val_acc)
                save_weights(net, os.path.join(log_dir, "model-best.pth"))
            if args.save_period > 1 and (epoch + 1) % args.save_period == 0:
                save_weights(net, os.path.join(log_dir, f"model-epoch{epoch + 1}.pth"))
            with atomic_path(state_path) as tmp:
                torch.save({"epoch": epoch, "optimizer": optimizer.state_dict(),
                            "best_acc": best_acc}, tmp)
            log.epoch(epoch, lr=lr, train_loss=train_loss, train_acc=train_acc,
                      train_top5=train_top5, val_loss=val_loss, val_acc=val_acc,
                      val_top5=val_top5, samples_per_s=speed)
    if log:
        log.info("best val_acc %.4f; run folder %s", best_acc, log_dir)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
