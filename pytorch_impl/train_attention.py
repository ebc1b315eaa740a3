"""Train the PyTorch port of the Residual Attention Network with the Gluon recipe
(``common/attention_recipe.py``), step for step: the same flags, batches, mixup, smoothed
targets and gluoncv schedule as ``gluon_impl.train_attention``, MXNet's SGD/NAG rules
(:class:`pytorch_impl.mxnet_optim.MXNetSGD`, gradients of the summed loss rescaled by 1 / batch
as the Gluon Trainer does) and an MSRAPrelu initialisation drawn from torch's generator. From
the same weights (``--initial-checkpoint``, or ``--init-from``) it reproduces the Gluon run numerically (``--dtype float64``
for the proof).

    python -m pytorch_impl.train_attention --num-layers 56 --epochs 200 --mixup-alpha 1.0
    torchrun --nproc_per_node 4 -m pytorch_impl.train_attention --num-layers 56 --amp

It runs on ``--device`` with ``--amp`` (:class:`pytorch_impl.session.Placement`), in NHWC by
default (``--no-channels-last``: NCHW); under ``torchrun`` it trains with
DistributedDataParallel (:func:`pytorch_impl.session.join_processes`): ``--batch-size`` is
the global batch, each process takes its share of every batch and rescales its summed
gradients by 1 / its share (DDP's average over the processes then makes it 1 / batch), and
process 0 writes the run folder.

The run folder gets ``train.log``, ``metrics.jsonl``, TensorBoard scalars,
``model-last.pth`` / ``model-best.pth`` (``state_dict`` only), the model card ``model.json``,
the optimizer state ``train-state.pth`` and ``train-state.json``, all written atomically; ``--resume`` continues
exactly.
"""
import torch
import torch.nn.functional as F
from torch import nn

from common import attention_recipe as recipe
from common.attention_arch import msra_prelu_std
from common.processes import Processes
from common.runs import refuse
from pytorch_impl import create_model, list_models
from pytorch_impl.mxnet_optim import MXNetSGD
from pytorch_impl.session import Placement, RunFiles, add_device_args, join_processes


def msra_prelu_init(model, generator):
    """MXNet's ``MSRAPrelu()`` (:func:`common.attention_arch.msra_prelu_std`) for conv and
    dense weights; BN scale 1, shift 0, biases 0."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight
            receptive = w[0, 0].numel()
            std = msra_prelu_std(w.shape[1] * receptive, w.shape[0] * receptive)
            with torch.no_grad():
                w.copy_(torch.randn(w.shape, generator=generator, dtype=w.dtype) * std)
                if module.bias is not None:
                    module.bias.zero_()


def soft_cross_entropy_sum(logits, targets):
    """Per-sample ``sum(-target * log_softmax)``, summed over the batch (Gluon's backward)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum()


def add_args(parser):
    """The device flags, NHWC by default (faster convolutions on CPU)."""
    add_device_args(parser, channels_last=True)


class Session(RunFiles, recipe.Session):
    """The recipe in PyTorch: the port in ``--dtype`` on ``--device`` in ``--amp``'s
    precision (:class:`pytorch_impl.session.Placement`), MXNet's SGD/NAG rule; ``model``
    holds the weights, ``net`` runs them (DistributedDataParallel under ``torchrun``)."""

    def __init__(self, args, num_classes, processes=Processes()):
        super().__init__(args, num_classes, processes)
        self.placement = Placement(args, processes)
        self.model = create_model(args.model, **self.kwargs).to(getattr(torch, args.dtype))
        msra_prelu_init(self.model, torch.Generator().manual_seed(args.seed))
        self.start_from_checkpoint("pytorch", args)
        self.net = self.placement.parallel(self.model)
        self.optimizer = MXNetSGD(self.model.parameters(), lr=args.lr, momentum=args.momentum,
                                  wd=args.wd, nesterov=args.optimizer == "nag")

    def train_step(self, images, targets, lr):
        """One update on the loss summed over this process's images, its gradients rescaled
        by 1 / their count (the float16 GradScaler unscales before that rule)."""
        for group in self.optimizer.param_groups:
            group["lr"], group["rescale_grad"] = lr, 1.0 / len(images)
        self.net.train()
        with self.placement.autocast():
            logits = self.net(self.placement.tensor(images))
        targets = self.placement.tensor(targets)
        logits = logits.to(targets.dtype)  # the loss in the targets' precision, out of autocast
        loss = soft_cross_entropy_sum(logits, targets)
        self.optimizer.zero_grad()
        self.placement.backward(loss, self.optimizer)
        return float(loss.detach()), logits.detach().cpu().numpy()

    @torch.no_grad()
    def eval_step(self, images, labels):
        self.net.eval()
        logits = self.net(self.placement.tensor(images))
        loss = F.cross_entropy(logits, self.placement.tensor(labels), reduction="sum")
        return float(loss), logits.cpu().numpy()


def main(argv=None):
    args = recipe.parse("pytorch", list_models(), argv, add_args)
    if args.amp and args.dtype != "float32":
        refuse(f"--amp computes from float32 weights; it cannot run with "
                         f"--dtype {args.dtype}")
    with join_processes(args) as processes:
        return recipe.train("pytorch", args, Session, processes, argv)


if __name__ == "__main__":
    main()
