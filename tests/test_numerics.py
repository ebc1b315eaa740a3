"""Training numerics shared by every framework: LR schedules against the schedulers they
reproduce (gluoncv, torch, paddle), label smoothing in both conventions against the
frameworks' losses, and mixup."""
import importlib.util
import math
import os

import numpy as np
import paddle
import pytest
import torch
import torch.nn.functional as F

from common.labels import one_hot, smooth_one_hot, smooth_uniform, soft_cross_entropy
from common.mixup import MixupSampler, mixup
from common.schedules import cosine_lr, gluoncv_lr, step_lr


@pytest.fixture(scope="module")
def gluoncv_lr_scheduler():
    """gluoncv/utils/lr_scheduler.py loaded alone: gluoncv's package refuses to import next
    to torch >= 2, but this file needs only mxnet."""
    spec = importlib.util.find_spec("gluoncv")
    path = os.path.join(spec.submodule_search_locations[0], "utils", "lr_scheduler.py")
    module_spec = importlib.util.spec_from_file_location("gluoncv_lr_scheduler_reference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("warmup_epochs, mode, steps", [
    (5, "cosine", ()), (0, "cosine", ()), (2, "step", (3, 6)), (0, "step", (1, 4)), (1, "cosine", ()),
])
def test_gluoncv_lr_matches_gluoncv(gluoncv_lr_scheduler, warmup_epochs, mode, steps):
    g = gluoncv_lr_scheduler
    iters_per_epoch, epochs, lr = 7, 10, 0.4
    parts = [g.LRScheduler(mode, base_lr=lr, target_lr=0, nepochs=epochs - warmup_epochs,
                           iters_per_epoch=iters_per_epoch, step_epoch=list(steps), step_factor=0.1)]
    if warmup_epochs:
        parts.insert(0, g.LRScheduler("linear", base_lr=0, target_lr=lr, nepochs=warmup_epochs,
                                      iters_per_epoch=iters_per_epoch))
    reference = g.LRSequential(parts)
    total = epochs * iters_per_epoch
    for n in range(0, total + 5):
        ours = gluoncv_lr(n, lr, total, warmup_epochs * iters_per_epoch, mode,
                          [s * iters_per_epoch for s in steps])
        assert ours == pytest.approx(reference(n), rel=1e-12, abs=1e-15), n


def test_cosine_matches_torch_and_paddle():
    total, lr = 23, 0.1
    w = torch.nn.Parameter(torch.zeros(1))
    t_opt = torch.optim.SGD([w], lr=lr)
    t_sched = torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, T_max=total, eta_min=1e-3)
    p_sched = paddle.optimizer.lr.CosineAnnealingDecay(learning_rate=lr, T_max=total, eta_min=1e-3)
    for it in range(total + 1):
        ours = cosine_lr(it, lr, total, 1e-3)
        assert ours == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-10)
        assert ours == pytest.approx(p_sched(), rel=1e-10)
        t_opt.step()
        t_sched.step()
        p_sched.step()


def test_step_matches_torch_and_paddle():
    lr, milestones = 0.1, [3, 7]
    w = torch.nn.Parameter(torch.zeros(1))
    t_opt = torch.optim.SGD([w], lr=lr)
    t_sched = torch.optim.lr_scheduler.MultiStepLR(t_opt, milestones, gamma=0.1)
    p_sched = paddle.optimizer.lr.MultiStepDecay(learning_rate=lr, milestones=milestones, gamma=0.1)
    for it in range(12):
        assert step_lr(it, lr, milestones) == pytest.approx(t_opt.param_groups[0]["lr"], rel=1e-12)
        assert step_lr(it, lr, milestones) == pytest.approx(p_sched(), rel=1e-12)
        t_opt.step()
        t_sched.step()
        p_sched.step()


def test_label_smoothing_conventions():
    labels, k, eps = np.array([0, 3, 9, 3]), 10, 0.1
    g = smooth_one_hot(labels, k, eps)
    assert np.allclose(g.sum(1), 1) and np.allclose(g[0, 0], 0.9) and np.allclose(g[0, 1], 0.1 / 9)
    u = smooth_uniform(labels, k, eps)
    assert np.allclose(u.sum(1), 1) and np.allclose(u[0, 0], 0.91) and np.allclose(u[0, 1], 0.01)
    assert np.allclose(g, smooth_uniform(labels, k, eps * k / (k - 1)))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        one_hot([10], 10)


def test_uniform_smoothing_is_torch_and_the_paddle_recipe_loss():
    rng = np.random.default_rng(0)
    logits, labels, eps = rng.normal(size=(6, 10)) * 3, rng.integers(0, 10, 6), 0.1
    ours = soft_cross_entropy(logits, smooth_uniform(labels, 10, eps, np.float64))
    torch_loss = F.cross_entropy(torch.tensor(logits), torch.tensor(labels), label_smoothing=eps)
    assert ours == pytest.approx(torch_loss.item(), rel=1e-12)
    # the Paddle recipe's LabelSmoothingCrossEntropy: confidence * nll + eps * mean(-log p)
    log_p = paddle.nn.functional.log_softmax(paddle.to_tensor(logits), axis=-1)
    nll = -paddle.take_along_axis(log_p, paddle.to_tensor(labels[:, None]), axis=-1).squeeze(1)
    smooth = -log_p.mean(axis=-1)
    paddle_loss = ((1 - eps) * nll + eps * smooth).mean()
    assert ours == pytest.approx(float(paddle_loss), rel=1e-12)


def test_mixup_sampler_and_mixing():
    sampler = MixupSampler(alpha=0.4, seed=3)
    draws = np.array([sampler(e, b) for e in range(20) for b in range(100)])
    assert draws.min() >= 0 and draws.max() <= 1
    assert draws.mean() == pytest.approx(0.5, abs=0.03)                    # Beta(a, a) is symmetric
    assert draws.var() == pytest.approx(1 / (4 * (2 * 0.4 + 1)), rel=0.1)  # its variance
    assert sampler(4, 7) == MixupSampler(0.4, 3)(4, 7) != MixupSampler(0.4, 4)(4, 7)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = one_hot([0, 1, 2], 3)
    mx, my = mixup(x, y, 0.25)
    assert np.allclose(mx[0], 0.25 * x[0] + 0.75 * x[2]) and np.allclose(my[0], [0.25, 0, 0.75])
    assert np.allclose(my.sum(1), 1) and mx.dtype == np.float32
    with pytest.raises(ValueError):
        MixupSampler(0)
