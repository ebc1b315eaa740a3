"""Train the PyTorch port of the Residual Attention Network with the Gluon recipe, step for
step: the same flags, batches, mixup, smoothed targets and gluoncv schedule as
``gluon_impl.train_attention``, MXNet's SGD/NAG rules (:class:`pytorch_impl.mxnet_optim.MXNetSGD`,
gradients of the summed loss rescaled by 1 / batch as the Gluon Trainer does) and an MSRAPrelu
initialisation drawn from torch's generator. From the same weights (``--init-from``) it
reproduces the Gluon run numerically (``--dtype float64`` for the proof).

    python -m pytorch_impl.train_attention --num-layers 56 --epochs 200 --mix-up 1 --alpha 1.0

The run folder gets ``train.log``, ``metrics.jsonl``, TensorBoard scalars,
``model-last.pth`` / ``model-best.pth`` (``state_dict`` only) and ``train-state.pth`` (epoch,
update count, best accuracy, optimizer), all written atomically; ``--resume`` continues exactly.
"""
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import attention_recipe as recipe
from common import runs
from common.checkpoint import atomic_open, load_gluon_params, load_pdparams
from common.convert import from_canonical, match_state, to_canonical
from pytorch_impl import create_model, list_models
from pytorch_impl.mxnet_optim import MXNetSGD

STATE = "train-state.pth"


def device_of(spec):
    return torch.device("cpu") if spec == "cpu" else torch.device(f"cuda:{int(spec.split(',')[0])}")


def msra_prelu_init(model, generator):
    """MXNet's ``MSRAPrelu()`` (Xavier, gaussian, factor 'avg', magnitude 2 / (1 + 0.25^2))
    for conv and dense weights; BN scale 1, shift 0, biases 0."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight
            receptive = w[0, 0].numel()
            fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
            std = math.sqrt((2.0 / (1 + 0.25 ** 2)) / ((fan_in + fan_out) / 2))
            with torch.no_grad():
                w.copy_(torch.randn(w.shape, generator=generator, dtype=w.dtype) * std)
                if module.bias is not None:
                    module.bias.zero_()


def load_weights(model, path):
    """Weights from a PyTorch, Gluon or Paddle checkpoint, through the shared naming rules."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if path.endswith(".params"):
        state = from_canonical(to_canonical(load_gluon_params(path), "gluon"), "pytorch", shapes)
    elif path.endswith(".pdparams"):
        state = from_canonical(to_canonical(load_pdparams(path), "paddle"), "pytorch", shapes)
    else:
        state = {k: v.numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
    match_state(state, shapes, what=path)
    dtype = next(model.parameters()).dtype
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in state.items()},
                          strict=True)


def soft_cross_entropy_sum(logits, targets):
    """Per-sample ``sum(-target * log_softmax)``, summed over the batch (Gluon's backward)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum()


@torch.no_grad()
def evaluate(model, loader, device, dtype, layout, max_batches):
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    batches = recipe.iters_per_epoch(loader, max_batches)
    for _, (x, y) in zip(range(batches), runs.progress(loader.epoch(0), batches, "val")):
        out = model(torch.from_numpy(x).to(device=device, dtype=dtype).contiguous(memory_format=layout))
        label = torch.from_numpy(y).to(device)
        total_loss += float(F.cross_entropy(out, label, reduction="sum"))
        correct += int((out.argmax(1) == label).sum())
        seen += len(y)
    return total_loss / seen, correct / seen


def save_atomic(obj, path):
    with atomic_open(path) as f:
        torch.save(obj, f)


def main(argv=None):
    parser = recipe.build_parser(__doc__.splitlines()[0], list_models())
    parser.add_argument("--memory-format", choices=("channels_last", "contiguous"),
                        default="channels_last",
                        help="activation layout (channels_last: faster convolutions on CPU)")
    args = recipe.parse(parser, argv)
    layout = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    log_dir = runs.default_log_dir(args, f"pytorch-{args.model}")
    if args.resume and not os.path.exists(os.path.join(log_dir, STATE)):
        parser.error(f"--resume: no {STATE} in {log_dir}")
    if args.ctx != "cpu" and not torch.cuda.is_available():
        parser.error(f"--ctx {args.ctx}: no CUDA device is available")
    train_set, test_set, train_loader, test_loader = runs.build_loaders(args, *runs.cifar_transforms())
    np_dtype = recipe.numpy_dtype(args)
    dtype = torch.float64 if np_dtype == np.float64 else torch.float32
    device = device_of(args.ctx)

    model = create_model(args.model, num_classes=train_set.num_classes).to(dtype)
    msra_prelu_init(model, torch.Generator().manual_seed(args.seed))
    if args.init_from:
        load_weights(model, args.init_from)
    model.to(device=device, memory_format=layout)
    ipe = recipe.iters_per_epoch(train_loader, args.max_batches)
    optimizer = MXNetSGD(model.parameters(), lr=args.lr, momentum=args.momentum, wd=args.wd,
                         nesterov=args.optimizer == "nag", rescale_grad=1.0 / args.batch_size)
    schedule = recipe.Schedule(args, ipe)
    targets = recipe.Targets(args, train_set.num_classes)

    start_epoch, num_update, best_acc = 0, 0, 0.0
    if args.resume:
        state = torch.load(os.path.join(log_dir, STATE), map_location=device, weights_only=True)
        load_weights(model, os.path.join(log_dir, "model-last.pth"))
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, num_update, best_acc = state["epoch"] + 1, state["num_update"], state["best_acc"]

    log = runs.RunLog(log_dir, f"pytorch-{args.model}", resume=args.resume)
    log.info("pytorch %s on %s (%d train / %d test images), %s: %s", args.model, args.dataset,
             len(train_set), len(test_set), "resuming" if args.resume else "start",
             {k: v for k, v in vars(args).items() if not k.startswith("_")})
    for epoch in recipe.epochs_to_run(args, start_epoch):
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        tic = time.time()
        batches = runs.progress(train_loader.epoch(epoch), ipe, f"epoch {epoch}")
        for index, (x, y) in zip(range(ipe), batches):
            x, dense = targets(x.astype(np_dtype), y, epoch, index)
            num_update += 1
            for group in optimizer.param_groups:
                group["lr"] = schedule(num_update)
                group["rescale_grad"] = 1.0 / len(y)
            out = model(torch.from_numpy(x).to(device).contiguous(memory_format=layout))
            loss = soft_cross_entropy_sum(out, torch.from_numpy(dense).to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach())
            correct += int((out.argmax(1).cpu().numpy() == y).sum())
            seen += len(y)
        speed = seen / (time.time() - tic)
        val_loss, val_acc = evaluate(model, test_loader, device, dtype, layout, args.max_batches)
        log.epoch(epoch, train_loss=total_loss / seen, train_acc=correct / seen, val_loss=val_loss,
                  val_acc=val_acc, lr=optimizer.param_groups[0]["lr"], samples_per_s=speed,
                  mixup=targets.mixing(epoch))

        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_atomic(weights, os.path.join(log_dir, "model-last.pth"))
        if val_acc > best_acc or epoch == 0:
            best_acc = max(best_acc, val_acc)
            save_atomic(weights, os.path.join(log_dir, "model-best.pth"))
        if (epoch + 1) % args.save_period == 0:
            save_atomic(weights, os.path.join(log_dir, f"model-epoch{epoch + 1}.pth"))
        save_atomic({"epoch": epoch, "num_update": num_update, "best_acc": best_acc,
                     "optimizer": optimizer.state_dict()}, os.path.join(log_dir, STATE))
    log.info("done: best val_acc %.4f; run folder %s", best_acc, log_dir)
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
