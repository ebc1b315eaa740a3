"""Train a Residual Attention Network natively in MXNet Gluon with the recipe of the Gluon
re-implementation (``common/attention_recipe.py``): MSRAPrelu init, hybridized network, SGD or
NAG with gluoncv's warmup + cosine or step schedule, mixup and label smoothing with dense
targets, ImageNet mean/std normalisation.

    python -m gluon_impl.train_attention --num-layers 56 --epochs 200 --mixup-alpha 1.0
    python -m gluon_impl.train_attention --dataset cifar10 --data-dir ../shared/data/cifar10-mini

The run folder (``--log-dir``) gets ``train.log``, ``metrics.jsonl``, mxboard scalars,
``model-last.params`` / ``model-best.params`` (``save_parameters``; weights only), the model
card ``model.json``, and the resume state ``train-state.json`` + ``train-state.params``
(momentum buffers by parameter name), all written atomically. ``--resume`` continues exactly
where it stopped; ``--initial-checkpoint`` (or ``--init-from``) starts from any framework's
weights.
"""
import mxnet as mx
from mxnet import autograd, gluon

from common import attention_recipe as recipe
from common.processes import Processes
from gluon_impl import create_model, list_models
from gluon_impl.session import MxboardScalars, RunFiles


class Session(RunFiles, recipe.Session):
    """The recipe in Gluon: the network hybridized on ``--ctx`` in ``--dtype``, the Trainer's
    ``sgd``/``nag`` stepped with the batch size (per-sample losses)."""

    def __init__(self, args, num_classes, processes=Processes()):
        super().__init__(args, num_classes, processes)
        index = recipe.gpu_index(args.ctx)
        self.ctx = mx.cpu() if index is None else mx.gpu(index)
        mx.random.seed(args.seed)
        self.model = create_model(args.model, **self.kwargs)
        self.model.initialize(mx.init.MSRAPrelu(), ctx=self.ctx)
        self.model.cast(args.dtype)
        self.start_from_checkpoint("gluon", args)
        self.model.hybridize()
        self.trainer = gluon.Trainer(self.model.collect_params(), args.optimizer, {
            "learning_rate": args.lr, "momentum": args.momentum, "wd": args.wd})
        self.dense_loss = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def array(self, x):
        return mx.nd.array(x, ctx=self.ctx, dtype=self.dtype)

    def train_step(self, images, targets, lr):
        self.trainer.set_learning_rate(lr)
        with autograd.record():
            logits = self.model(self.array(images))
            loss = self.dense_loss(logits, self.array(targets))
        loss.backward()
        self.trainer.step(len(images))
        return float(loss.sum().asscalar()), logits.asnumpy()

    def eval_step(self, images, labels):
        logits = self.model(self.array(images))
        return float(self.loss(logits, self.array(labels)).sum().asscalar()), logits.asnumpy()


def main(argv=None):
    args = recipe.parse("gluon", list_models(), argv)
    return recipe.train("gluon", args, Session, argv=argv, board=MxboardScalars)


if __name__ == "__main__":
    main()
