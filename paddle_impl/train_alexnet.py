"""Train AlexNet or AlexNet-SimAM natively in PaddlePaddle with the recipe of the original
experiment: resize 130, colour jitter, random resized crop 128 (scale 0.6-1), flip,
rotation 20, ImageNet mean/std (test: resize 128); batch 128 dropping the last short batch;
cross entropy with label smoothing 0.1; Adam lr 5e-4 with (coupled L2) weight decay 1e-5;
cosine decay stepped every iteration over all epochs; 50 epochs; seed 42; optional mixup.

    python -m paddle_impl.train_alexnet --model alexnet_simam --dataset cifar10 \\
        --data-dir ../shared/data/cifar10-mini --log-dir runs/alexnet_simam

The run folder gets ``model-last.pdparams`` / ``model-best.pdparams`` (weights only),
``train-state.pdopt`` (optimizer, epoch, best accuracy: what ``--resume`` reads),
``train.log``, ``metrics.jsonl``, TensorBoard scalars, and at the end
``learning-curves.png`` and ``predictions.png``. On CPU, Paddle uses one thread unless
``OMP_NUM_THREADS`` is set before it starts.
"""
import argparse
import os
import sys
import time

import numpy as np
import paddle

from common import plots, runs, transforms
from common.checkpoint import CheckpointError, atomic_path, load_pdparams, save_pdparams
from common.convert import ConversionError, match_state
from common.data import IMAGENET_MEAN, IMAGENET_STD
from common.labels import smooth_uniform
from common.mixup import MixupSampler, mixup
from common.schedules import cosine_lr
from paddle_impl import create_model

MODELS = ("alexnet", "alexnet_simam")
FRAMEWORK = "paddle"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="alexnet_simam", choices=MODELS)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--mixup-alpha", type=float, default=0.0,
                        help="mix each batch with its reverse, lambda ~ Beta(a, a); 0 = off")
    parser.add_argument("--grid", type=int, default=18, help="test images in predictions.png")
    runs.add_common_args(parser, epochs=50, batch_size=128, lr=5e-4, wd=1e-5, seed=42)
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = runs.parse(parser, argv)
    if not 0 <= args.label_smoothing < 1:
        parser.error("--label-smoothing must lie in [0, 1)")
    if args.mixup_alpha < 0:
        parser.error("--mixup-alpha must be >= 0")
    if args.max_batches is not None and args.max_batches < 1:
        parser.error("--max-batches must be at least 1")
    return args


def recipe_transforms():
    """(train, test) builders of the 128x128 recipe; it normalises with ImageNet statistics
    whatever the dataset."""
    return (lambda mean, std: transforms.alexnet_train(IMAGENET_MEAN, IMAGENET_STD),
            lambda mean, std: transforms.alexnet_test(IMAGENET_MEAN, IMAGENET_STD))


def soft_cross_entropy(logits, targets):
    """Batch mean of ``sum(-targets * log_softmax(logits))``; with
    :func:`common.labels.smooth_uniform` targets it is the recipe's label-smoothing loss
    ``(1 - e) * nll + e * mean_k(-log p_k)``.

    The log-probabilities are ``logits - logsumexp(logits)``: Paddle's CPU
    ``F.log_softmax`` (3.3.1) clips ``logits - max`` at -64, which changes the loss and its
    gradient once the logits of a row spread wider than 64 (it happens in the first
    iterations with Paddle's default initialisation)."""
    log_p = logits - paddle.logsumexp(logits, axis=1, keepdim=True)
    return -(targets * log_p).sum(axis=1).mean()


def make_optimizer(model, lr, wd):
    """The recipe's Adam: ``weight_decay=float`` is coupled L2 (added to the gradient)."""
    return paddle.optimizer.Adam(learning_rate=lr, parameters=model.parameters(), weight_decay=wd)


def train_step(model, optimizer, images, targets, lr):
    """One Adam step at learning rate ``lr``; returns (loss, logits)."""
    optimizer.set_lr(lr)
    logits = model(images)
    loss = soft_cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    return loss, logits


@paddle.no_grad()
def evaluate(model, loader, num_classes, eps, max_batches=None):
    """(loss, accuracy, predictions, seconds spent in the model's forward) over ``loader``
    (its first ``max_batches`` batches when given: smoke runs)."""
    model.eval()
    loss_sum, correct, predictions, forward_s = 0.0, 0, [], 0.0
    for images, labels in runs.progress(loader, len(loader), "eval"):
        if len(predictions) == max_batches:
            break
        start = time.perf_counter()
        logits = model(paddle.to_tensor(images))
        logits_np = logits.numpy()
        forward_s += time.perf_counter() - start
        targets = paddle.to_tensor(smooth_uniform(labels, num_classes, eps))
        loss_sum += float(soft_cross_entropy(logits, targets)) * len(labels)
        predictions.append(logits_np.argmax(1))
        correct += int((predictions[-1] == labels).sum())
    predictions = np.concatenate(predictions)
    return loss_sum / len(predictions), correct / len(predictions), predictions, forward_s


def save_weights(model, path):
    with atomic_path(path) as tmp:
        paddle.save(model.state_dict(), tmp)


def save_train_state(model, optimizer, epoch, best_acc, path):
    """The optimizer's accumulators under the parameters' structured names (Paddle's own
    names, ``linear_3.w_0``, depend on how many layers the process built before), plus the
    next epoch and the best accuracy."""
    structured = {p.name: n for n, p in model.named_parameters()}
    state = {}
    for key, value in optimizer.state_dict().items():
        owner = next((p for p in structured if key.startswith(p + "_")), None)
        if owner is None:
            raise CheckpointError(f"{path}: optimizer state {key!r} belongs to no parameter")
        state[f"{structured[owner]}@{key[len(owner) + 1:]}"] = value.numpy()
    state.update({"@epoch": np.array(epoch, np.int64), "@best_acc": np.array(best_acc)})
    save_pdparams(state, path)


def resume_files(log_dir):
    """(weights, train state) of the run in ``log_dir``; a clear error when one is missing."""
    paths = os.path.join(log_dir, "model-last.pdparams"), os.path.join(log_dir, "train-state.pdopt")
    for path in paths:
        if not os.path.exists(path):
            raise CheckpointError(f"--resume: {path} is missing (nothing to resume in {log_dir})")
    return paths


def resume(model, optimizer, log_dir):
    """Load ``model-last.pdparams`` and ``train-state.pdopt``; returns (next epoch, best acc)."""
    weights, state_path = resume_files(log_dir)
    state = load_pdparams(weights)
    match_state(state, {k: v.shape for k, v in model.state_dict().items()}, weights)
    model.set_state_dict(state)
    state = load_pdparams(state_path)
    epoch, best_acc = int(state.pop("@epoch")), float(state.pop("@best_acc"))
    unique = {n: p.name for n, p in model.named_parameters()}
    accumulators = {}
    for key, value in state.items():
        name, _, accumulator = key.partition("@")
        if name not in unique:
            raise CheckpointError(f"{state_path}: optimizer state for {name!r}, which "
                                  f"{type(model).__name__} does not have")
        accumulators[f"{unique[name]}_{accumulator}"] = paddle.to_tensor(value)
    optimizer.set_state_dict(accumulators)
    return epoch, best_acc


def main(argv=None):
    args = parse_args(argv)
    log_dir = runs.default_log_dir(args, f"{FRAMEWORK}-{args.model}")
    if args.resume:
        resume_files(log_dir)  # fail before loading data
    paddle.seed(args.seed)
    train, test, train_loader, test_loader = runs.build_loaders(args, *recipe_transforms())
    num_classes, eps = train.num_classes, args.label_smoothing
    model = create_model(args.model, num_classes=num_classes)
    optimizer = make_optimizer(model, args.lr, args.wd)
    start_epoch, best_acc = resume(model, optimizer, log_dir) if args.resume else (0, 0.0)
    log = runs.RunLog(log_dir, f"{FRAMEWORK}-{args.model}", resume=args.resume)
    log.info("%s %s on %s: %d train / %d test images, %d classes; %s", FRAMEWORK, args.model,
             args.dataset, len(train), len(test), num_classes, vars(args))
    steps = min(len(train_loader), args.max_batches or len(train_loader))
    total_steps = steps * args.epochs
    sampler = MixupSampler(args.mixup_alpha, args.seed) if args.mixup_alpha > 0 else None
    val = None
    for epoch in range(start_epoch, args.epochs):
        model.train()
        paddle.seed(args.seed * 100003 + epoch)  # dropout masks per epoch: a resumed run draws the same
        loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
        batches = runs.progress(train_loader.epoch(epoch), steps, f"epoch {epoch}")
        for b, (images, labels) in enumerate(batches):
            if b == steps:
                break
            targets = smooth_uniform(labels, num_classes, eps)
            if sampler is not None:
                images, targets = mixup(images, targets, sampler(epoch, b))
            lr = cosine_lr(epoch * steps + b, args.lr, total_steps)
            loss, logits = train_step(model, optimizer, paddle.to_tensor(images),
                                      paddle.to_tensor(targets), lr)
            loss_sum += float(loss) * len(labels)
            correct += int((logits.numpy().argmax(1) == labels).sum())
            seen += len(labels)
        train_s = time.perf_counter() - start
        val = evaluate(model, test_loader, num_classes, eps, args.max_batches)
        val_loss, val_acc = val[0], val[1]
        save_weights(model, os.path.join(log_dir, "model-last.pdparams"))
        if args.save_period > 1 and (epoch + 1) % args.save_period == 0:  # model-last is every epoch
            save_weights(model, os.path.join(log_dir, f"model-epoch{epoch + 1:03d}.pdparams"))
        best_path = os.path.join(log_dir, "model-best.pdparams")
        if val_acc > best_acc or not os.path.exists(best_path):
            best_acc = max(best_acc, val_acc)
            save_weights(model, best_path)
        log.epoch(epoch, train_loss=loss_sum / seen, train_acc=correct / seen, val_loss=val_loss,
                  val_acc=val_acc, best_acc=best_acc, lr=lr, train_samples_per_s=seen / train_s)
        # the train state last: it is what --resume continues from
        save_train_state(model, optimizer, epoch + 1, best_acc,
                         os.path.join(log_dir, "train-state.pdopt"))
    if val is None:  # resumed a finished run: evaluate what it ended with
        val = evaluate(model, test_loader, num_classes, eps, args.max_batches)
    finish(log, args, test, val, best_acc)
    log.close()
    return best_acc


def finish(log, args, test, val, best_acc):
    """Learning curves, prediction grid and inference throughput at the end of a run."""
    _, val_acc, predictions, forward_s = val
    plots.learning_curves(log.history(), os.path.join(log.dir, "learning-curves.png"))
    k = min(args.grid, len(predictions))
    plots.prediction_grid([test.images[i] for i in range(k)], predictions[:k], test.labels[:k],
                          test.classes, os.path.join(log.dir, "predictions.png"))
    log.info("final val acc %.4f, best %.4f; inference %.1f images/s (batch %d, forward only)",
             val_acc, best_acc, len(predictions) / forward_s, args.batch_size)


if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, ConversionError) as e:
        sys.exit(f"error: {e}")
