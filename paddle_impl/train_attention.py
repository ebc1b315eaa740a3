"""Train the PaddlePaddle port of the Residual Attention Network with the Gluon recipe
(``common/attention_recipe.py``), step for step: the same flags, batches, mixup, smoothed
targets and gluoncv schedule as ``gluon_impl.train_attention``, MXNet's SGD/NAG rules
(:class:`paddle_impl.mxnet_optim.MXNetSGD`, gradients of the summed loss rescaled by 1 / batch
as the Gluon Trainer does) and an MSRAPrelu initialisation drawn from Paddle's generator. From
the same weights (``--initial-checkpoint``, or ``--init-from``) it reproduces the Gluon run
numerically (``--dtype float64`` for the proof).

    python -m paddle_impl.train_attention --num-layers 56 --epochs 200 --mix-up 1 --alpha 1.0

The run folder gets ``train.log``, ``metrics.jsonl``, TensorBoard scalars,
``model-last.pdparams`` / ``model-best.pdparams`` (``state_dict`` only), the model card
``model.json``, the optimizer state ``train-state.pdopt`` and ``train-state.json``, all
written atomically; ``--resume`` continues exactly. On CPU, Paddle uses one thread unless
``OMP_NUM_THREADS`` is set before it starts.
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
from paddle_impl.session import RunFiles, soft_cross_entropy


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
    """The recipe in Paddle: the port on ``--ctx`` in ``--dtype``, MXNet's SGD/NAG rule."""

    def __init__(self, args, num_classes, processes=Processes()):
        super().__init__(args, num_classes, processes)
        index = recipe.gpu_index(args.ctx)
        if index is not None and not paddle.device.is_compiled_with_cuda():
            raise SystemExit(f"error: --ctx {args.ctx}: this Paddle has no CUDA")
        paddle.set_device("cpu" if index is None else f"gpu:{index}")
        paddle.seed(args.seed)
        self.model = create_model(args.model, **self.kwargs)
        self.model.to(dtype=args.dtype)
        msra_prelu_init(self.model)
        self.start_from_checkpoint("paddle", args)
        self.optimizer = MXNetSGD(self.model.parameters(), learning_rate=args.lr,
                                  momentum=args.momentum, wd=args.wd,
                                  nesterov=args.optimizer == "nag")

    def train_step(self, images, targets, lr):
        self.optimizer.set_lr(lr)
        self.optimizer.rescale_grad = 1.0 / len(images)
        self.model.train()
        logits = self.model(paddle.to_tensor(images))
        loss = soft_cross_entropy(logits, paddle.to_tensor(targets), reduction="sum")
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        return float(loss), logits.numpy()

    @paddle.no_grad()
    def eval_step(self, images, labels):
        self.model.eval()
        logits = self.model(paddle.to_tensor(images))
        # through soft_cross_entropy: Paddle's CPU log_softmax clips at -64
        targets = paddle.to_tensor(one_hot(labels, logits.shape[1], self.dtype))
        loss = soft_cross_entropy(logits, targets, reduction="sum")
        return float(loss), logits.numpy()


def main(argv=None):
    return recipe.train("paddle", recipe.parse("paddle", list_models(), argv), Session, argv=argv)


if __name__ == "__main__":
    main()
