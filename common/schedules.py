"""Learning-rate schedules as pure functions of the iteration, so that every framework
sets exactly the same rate at every step (and a resumed run continues the curve).

* :func:`step_lr`: multiply by ``factor`` at each of ``steps`` (torch MultiStepLR,
  Paddle MultiStepDecay).
* :func:`cosine_lr`: cosine annealing over ``total`` steps (torch CosineAnnealingLR,
  Paddle CosineAnnealingDecay).
* :func:`gluoncv_lr`: gluoncv's recipe scheduler: a linear warmup from 0 over
  ``warmup`` iterations, then cosine or step decay, as ``LRSequential`` of two
  ``LRScheduler`` computes it (with its N = niters - 1 and clipping). MXNet's Trainer asks
  for ``num_update`` starting at 1.
"""
import math


def step_lr(iteration, base_lr, steps, factor=0.1):
    """``base_lr * factor ** (number of steps <= iteration)``."""
    return base_lr * factor ** sum(1 for s in steps if s <= iteration)


def cosine_lr(iteration, base_lr, total, min_lr=0.0):
    """``min_lr + (base_lr - min_lr) * (1 + cos(pi * iteration / total)) / 2``."""
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * iteration / total)) / 2


def _gluoncv_segment(mode, t, niters, base_lr, target_lr, steps=(), factor=0.1):
    n = niters - 1
    t = min(max(0, t), n)
    if mode == "step":
        return base_lr * factor ** sum(1 for s in steps if s <= t)
    if n <= 0:
        return base_lr if mode == "cosine" else target_lr
    f = 1 - t / n if mode == "linear" else (1 + math.cos(math.pi * t / n)) / 2
    return target_lr + (base_lr - target_lr) * f


def gluoncv_lr(num_update, base_lr, total_iters, warmup_iters=0, mode="cosine",
               step_iters=(), step_factor=0.1, target_lr=0.0):
    """gluoncv ``LRSequential([LRScheduler('linear', 0 -> base_lr, warmup_iters),
    LRScheduler(mode, base_lr -> target_lr, total_iters - warmup_iters, step_iter)])``
    at ``num_update``. ``step_iters`` are counted from the end of the warmup, as gluoncv's
    ``step_epoch`` is."""
    if mode not in ("cosine", "step"):
        raise ValueError(f"unknown LR mode {mode!r}; expected 'cosine' or 'step'")
    main_iters = total_iters - warmup_iters
    num_update = min(num_update, total_iters - 1)
    if num_update < warmup_iters:
        return _gluoncv_segment("linear", num_update, warmup_iters, 0.0, base_lr)
    return _gluoncv_segment(mode, num_update - warmup_iters, main_iters, base_lr, target_lr,
                            step_iters, step_factor)
