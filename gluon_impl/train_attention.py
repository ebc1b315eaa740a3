"""Train a Residual Attention Network natively in MXNet Gluon with the recipe of the Gluon
re-implementation (``common/attention_recipe.py``): MSRAPrelu init, hybridized network, SGD or
NAG with gluoncv's warmup + cosine or step schedule, mixup and label smoothing with dense
targets, ImageNet mean/std normalisation.

    python -m gluon_impl.train_attention --num-layers 56 --epochs 200 --mixup-alpha 1.0
    python -m gluon_impl.train_attention --dataset cifar10 --data-dir ../shared/data/cifar10-mini
    python -m gluon_impl.train_attention --ctx 0,1 --float16    # the original's flags: 2 GPUs
    python -m scripts.launch_gluon -n 2 -m gluon_impl.train_attention ...   # 2 dist_sync workers

Where and how precisely it runs: ``--ctx``, ``--amp`` (``--float16``), ``--kvstore``
(:mod:`gluon_impl.session`).

The run folder (``--log-dir``) gets ``train.log``, ``metrics.jsonl``, mxboard scalars,
``model-last.params`` / ``model-best.params`` (``save_parameters``; weights only), the model
card ``model.json``, and the resume state ``train-state.json`` + ``train-state.params``
(momentum buffers by parameter name), all written atomically. ``--resume`` continues exactly
where it stopped; ``--initial-checkpoint`` (or ``--init-from``) starts from any framework's
weights.
"""
import mxnet as mx
from mxnet import gluon

from common import attention_recipe as recipe
from common.processes import Processes
from gluon_impl import create_model, list_models
from gluon_impl.session import (MxboardScalars, Placement, RunFiles, add_device_args,
                                check_device_args, join_processes)


class Session(RunFiles, recipe.Session):
    """The recipe in Gluon: the network hybridized on ``--ctx`` in ``--dtype`` (float16 with
    ``--amp``, the original's ``--float16``), the Trainer's ``sgd``/``nag`` stepped with the
    global batch size (per-sample losses) (:class:`gluon_impl.session.Placement`)."""

    def __init__(self, args, num_classes, processes=Processes()):
        super().__init__(args, num_classes, processes)
        self.placement = Placement(args, processes)
        mx.random.seed(args.seed)
        self.model = create_model(args.model, **self.kwargs)
        self.model.initialize(mx.init.MSRAPrelu())
        self.model.cast(args.dtype)
        self.start_from_checkpoint("gluon", args)
        self.placement.module(self.model).hybridize()
        self.trainer = self.placement.trainer(self.model.collect_params(), args.optimizer, {
            "learning_rate": args.lr, "momentum": args.momentum, "wd": args.wd})
        self.dense_loss = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    def train_step(self, images, targets, lr):
        return self.placement.train_step(self.model, self.trainer, images, targets, lr,
                                         self.dense_loss)

    def eval_step(self, images, labels):
        return self.placement.eval_step(self.model, images, labels.astype(self.dtype), self.loss)


def add_args(parser):
    """The Gluon device flags, ``--amp`` also spelled as the original's ``--float16``."""
    return add_device_args(parser, ("--float16",))


def main(argv=None):
    args = check_device_args(recipe.parse("gluon", list_models(), argv, add_args))
    return recipe.train("gluon", args, Session, join_processes(args), argv=argv,
                        board=MxboardScalars)


if __name__ == "__main__":
    main()
