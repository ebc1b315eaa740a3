"""Train the PaddlePaddle port of the Residual Attention Network with the Gluon recipe
(``common/attention_recipe.py``), step for step: the same flags, batches, mixup, smoothed
targets and gluoncv schedule as ``gluon_impl.train_attention``, MXNet's SGD/NAG rules
(:class:`paddle_impl.mxnet_optim.MXNetSGD`, gradients of the summed loss rescaled by 1 / batch
as the Gluon Trainer does) and an MSRAPrelu initialisation drawn from Paddle's generator. From
the same weights (``--initial-checkpoint``, or ``--init-from``) it reproduces the Gluon run
numerically (``--dtype float64`` for the proof).

    python -m paddle_impl.train_attention --num-layers 56 --epochs 200 --mix-up 1 --alpha 1.0
    python -m paddle.distributed.launch --devices 0,1 python -m paddle_impl.train_attention ...

The run folder gets ``train.log``, ``metrics.jsonl``, TensorBoard scalars,
``model-last.pdparams`` / ``model-best.pdparams`` (``state_dict`` only), the model card
``model.json``, the optimizer state ``train-state.pdopt`` and ``train-state.json``, all
written atomically; ``--resume`` continues exactly. It runs on ``--device`` (``--ctx`` is
the Gluon script's) in ``--amp``'s precision; under ``paddle.distributed.launch`` every
process trains its share of each batch and process 0 writes the run folder
(paddle_impl/session.py).
"""
import math

import paddle
from paddle import nn

from common import attention_recipe as recipe
from common.attention_arch import msra_prelu_std
from common.labels import one_hot
from common.processes import Processes
from paddle_impl import create_model, list_models
from paddle_impl.mxnet_optim import MXNetSGD
from paddle_impl.session import (Placement, RunFiles, add_device_args, join_processes,
                                 refuse, soft_cross_entropy)


def msra_prelu_init(model):
    """MXNet's ``MSRAPrelu()`` (:func:`common.attention_arch.msra_prelu_std`) for conv and
    dense weights, drawn from Paddle's generator (``paddle.seed``); BN scale 1, shift 0,
    biases 0 are Paddle's own initialisation. (Paddle's Linear weight is [in, out]: the fans'
    sum is the same.)"""
    for layer in model.sublayers():
        if isinstance(layer, (nn.Conv2D, nn.Linear)):
            w = layer.weight
            receptive = math.prod(w.shape[2:])
            std = msra_prelu_std(w.shape[1] * receptive, w.shape[0] * receptive)
            w.set_value(paddle.randn(w.shape, dtype=w.dtype) * std)
            if layer.bias is not None:
                layer.bias.set_value(paddle.zeros_like(layer.bias))


class Session(RunFiles, recipe.Session):
    """The recipe in Paddle: the port in ``--dtype`` on the process's device, run as ``net``
    (:class:`paddle_impl.session.Placement`: ``--amp``, DataParallel under the launcher),
    MXNet's SGD/NAG rule."""

    def __init__(self, args, num_classes, processes=Processes()):
        super().__init__(args, num_classes, processes)
        paddle.seed(args.seed)
        self.model = create_model(args.model, **self.kwargs)
        self.model.to(dtype=args.dtype)
        msra_prelu_init(self.model)
        self.start_from_checkpoint("paddle", args)
        self.placement = Placement(args, processes)
        self.net = self.placement.module(self.model)
        self.optimizer = MXNetSGD(self.model.parameters(), learning_rate=args.lr,
                                  momentum=args.momentum, wd=args.wd,
                                  nesterov=args.optimizer == "nag")

    def train_step(self, images, targets, lr):
        """One update on this process's share; the gradients of its summed loss are rescaled
        by 1 / share, and DataParallel averages them over the (equal) shares."""
        self.optimizer.set_lr(lr)
        self.optimizer.rescale_grad = 1.0 / len(images)
        self.net.train()
        with self.placement.autocast():
            logits = self.net(paddle.to_tensor(images)).astype(self.dtype.name)
        loss = soft_cross_entropy(logits, paddle.to_tensor(targets), reduction="sum")
        self.placement.step(loss, self.optimizer)
        return float(loss), logits.numpy()

    @paddle.no_grad()
    def eval_step(self, images, labels):
        self.net.eval()
        logits = self.net(paddle.to_tensor(images))
        # through soft_cross_entropy: Paddle's CPU log_softmax clips at -64
        targets = paddle.to_tensor(one_hot(labels, logits.shape[1], self.dtype))
        loss = soft_cross_entropy(logits, targets, reduction="sum")
        return float(loss), logits.numpy()


def main(argv=None):
    args = recipe.parse("paddle", list_models(), argv, add_device_args)
    if args.amp and args.dtype != "float32":
        refuse(f"--amp trains float32 weights, not --dtype {args.dtype}")
    with join_processes(args) as processes:
        return recipe.train("paddle", args, Session, processes, argv)


if __name__ == "__main__":
    main()
