"""Train the PyTorch port of the Residual Attention Network with the Gluon recipe
(``common/attention_recipe.py``), step for step: the same flags, batches, mixup, smoothed
targets and gluoncv schedule as ``gluon_impl.train_attention``, MXNet's SGD/NAG rules
(:class:`pytorch_impl.mxnet_optim.MXNetSGD`, gradients of the summed loss rescaled by 1 / batch
as the Gluon Trainer does) and an MSRAPrelu initialisation drawn from torch's generator. From
the same weights (``--initial-checkpoint``, or ``--init-from``) it reproduces the Gluon run numerically (``--dtype float64``
for the proof).

    python -m pytorch_impl.train_attention --num-layers 56 --epochs 200 --mixup-alpha 1.0

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
from pytorch_impl import create_model, list_models
from pytorch_impl.mxnet_optim import MXNetSGD
from pytorch_impl.session import RunFiles

LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


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
    parser.add_argument("--memory-format", choices=tuple(LAYOUTS), default="channels_last",
                        help="activation layout (channels_last: faster convolutions on CPU)")


class Session(RunFiles, recipe.Session):
    """The recipe in PyTorch: the port on ``--ctx`` in ``--dtype`` and ``--memory-format``,
    MXNet's SGD/NAG rule."""

    def __init__(self, args, num_classes, processes=Processes()):
        super().__init__(args, num_classes, processes)
        index = recipe.gpu_index(args.ctx)
        if index is not None and not torch.cuda.is_available():
            raise SystemExit(f"error: --ctx {args.ctx}: no CUDA device is available")
        self.device = torch.device("cpu" if index is None else f"cuda:{index}")
        self.layout = LAYOUTS[args.memory_format]
        dtype = getattr(torch, args.dtype)
        self.model = create_model(args.model, **self.kwargs).to(dtype)
        msra_prelu_init(self.model, torch.Generator().manual_seed(args.seed))
        self.start_from_checkpoint("pytorch", args)
        self.model.to(device=self.device, memory_format=self.layout)
        self.optimizer = MXNetSGD(self.model.parameters(), lr=args.lr, momentum=args.momentum,
                                  wd=args.wd, nesterov=args.optimizer == "nag")

    def tensor(self, x):
        return torch.from_numpy(x).to(self.device).contiguous(memory_format=self.layout)

    def train_step(self, images, targets, lr):
        for group in self.optimizer.param_groups:
            group["lr"], group["rescale_grad"] = lr, 1.0 / len(images)
        self.model.train()
        logits = self.model(self.tensor(images))
        loss = soft_cross_entropy_sum(logits, torch.from_numpy(targets).to(self.device))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), logits.detach().cpu().numpy()

    @torch.no_grad()
    def eval_step(self, images, labels):
        self.model.eval()
        logits = self.model(self.tensor(images))
        loss = F.cross_entropy(logits, torch.from_numpy(labels).to(self.device), reduction="sum")
        return float(loss), logits.cpu().numpy()


def main(argv=None):
    args = recipe.parse("pytorch", list_models(), argv, add_args)
    return recipe.train("pytorch", args, Session, argv=argv)


if __name__ == "__main__":
    main()
