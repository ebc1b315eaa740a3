"""SAN (born in PyTorch) against its MXNet Gluon port: operators, weight conversion through
common/convert.py (round trips through every checkpoint format), forward in eval mode
(imperative and hybridized) and train mode with the running statistics, gradients, three
steps of the recipe's SGD, and the real case on cifar10-mini. The reduced SAN, batches and
helpers are those of parity_tests/test_san.py (the Paddle port's tests), whose docstring
explains them."""
import contextlib

import mxnet as mx
import numpy as np
import pytest
import torch
from mxnet import autograd

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchsgd')
from common import transforms
from common.convert import match_state, to_canonical
from common.data import get_dataset
from common.formats import EXTENSION, convert_state, read_state, write_state
from common.labels import smooth_uniform
from common.schedules import cosine_lr
from gluon_impl import create_model as create_gluon
from gluon_impl import san_ops as gluon_ops
from gluon_impl.weights import model_shapes
from parity_tests.test_san import (GRAD_BATCH, OPERATOR_GEOMETRIES, OPERATOR_RESULTS, REDUCED, SA_TYPES,
                                   TRAIN_BATCH, assert_grads_close, images, operator_inputs,
                                   operator_loss, randomise_bn_statistics, torch_operator_results,
                                   torch_state)
from parity_tests.tolerances import assert_close, assert_same_argmax
from pytorch_impl import create_model as create_torch
from pytorch_impl import train_san as torch_train_san

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def build_torch(sa_type, dtype):
    torch.manual_seed(0)
    model = create_torch(f"san10_{sa_type}", **REDUCED).to(DTYPES[dtype])
    randomise_bn_statistics(model, 1)
    return model


def gluon_port(t_model, sa_type, dtype, state=None):
    """The Gluon SAN with ``t_model``'s weights (or the PyTorch ``state``), loaded through
    the canonical naming rules (``from_canonical`` + ``match_state``), in ``dtype``."""
    model = create_gluon(f"san10_{sa_type}", **REDUCED)
    shapes = model_shapes(model)
    converted = convert_state(torch_state(t_model) if state is None else state, "pytorch", "gluon", shapes)
    match_state(converted, shapes)
    model.initialize()
    model.cast(dtype)
    set_gluon_state(model, converted)
    return model


def set_gluon_state(model, state):
    for name, p in model._collect_params_with_prefix().items():
        p.set_data(mx.nd.array(state[name], dtype=p.dtype))


def gluon_state(model):
    return {k: p.data().asnumpy() for k, p in model._collect_params_with_prefix().items()}


@contextlib.contextmanager
def restored(t_model, g_model):
    """Put both models' weights and statistics back as they were after the block."""
    before_t, before_g = torch_state(t_model), gluon_state(g_model)
    try:
        yield
    finally:
        t_model.load_state_dict({k: torch.from_numpy(v) for k, v in before_t.items()})
        set_gluon_state(g_model, before_g)


@pytest.fixture(scope="module", params=SA_TYPES)
def pair64(request):
    t_model = build_torch(request.param, "float64")
    return t_model, gluon_port(t_model, request.param, "float64"), request.param


def nd(a):
    return mx.nd.array(a, dtype=a.dtype)


def soft_loss(F_log_softmax, logits, targets):
    return -(targets * F_log_softmax(logits)).sum(1).mean()


# --------------------------------------------------------------------------- operators
@pytest.mark.parametrize("dtype", (np.float64, np.float32))
@pytest.mark.parametrize("pad_mode", (0, 1))
@pytest.mark.parametrize("geometry", OPERATOR_GEOMETRIES)
def test_operators_forward_and_backward(geometry, pad_mode, dtype):
    arrays = operator_inputs(geometry, dtype)
    inputs = [nd(a) for a in arrays[:3]]
    for a in inputs:
        a.attach_grad()
    with autograd.record():
        outputs, loss = operator_loss(gluon_ops, *inputs, *map(nd, arrays[3:]), geometry, pad_mode)
    loss.backward()
    for name, actual, expected in zip(OPERATOR_RESULTS, outputs + [a.grad for a in inputs],
                                      torch_operator_results(geometry, pad_mode, dtype)):
        assert_close(actual, expected, dtype, name)


# --------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("sa_type,dtype", [("pairwise", "float64"), ("patchwise", "float32")])
def test_conversion_round_trips_are_bit_exact(sa_type, dtype, tmp_path):
    """The Gluon weights (``save_parameters``) through every direction between the four
    formats (.params, .pth, .pdparams, .safetensors: one file per step, each of the 12
    ordered pairs once), then back: every tensor bit for bit, its dtype kept."""
    import paddle_impl
    g_model = gluon_port(build_torch(sa_type, dtype), sa_type, dtype)
    name = f"san10_{sa_type}"
    shapes = {"gluon": model_shapes(g_model), "paddle": paddle_impl._registry.shapes(name, **REDUCED),
              "pytorch": None, "safetensors": None}
    original = gluon_state(g_model)
    path = tmp_path / "0.params"
    g_model.save_parameters(str(path))
    source = "gluon"
    cycle = ["pytorch", "gluon", "paddle", "gluon", "safetensors", "pytorch", "paddle", "pytorch",
             "safetensors", "paddle", "safetensors", "gluon"]
    canonical = to_canonical(original, "gluon")
    for i, target in enumerate(cycle, 1):
        state = convert_state(read_state(path), source, target, shapes[target])
        path = tmp_path / f"{i}{EXTENSION[target]}"
        write_state(state, path, target, model=name)
        source = target
        # every format holds the same tensors: compare them under PyTorch's names
        again = convert_state(read_state(path), target, "pytorch")
        assert again.keys() == canonical.keys(), (i, target)
        for k, v in canonical.items():
            assert again[k].dtype == v.dtype and np.array_equal(again[k], v), (i, target, k)
    back = read_state(path)
    assert back.keys() == original.keys()
    for k, v in original.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k


# --------------------------------------------------------------------------- forward
def test_forward_eval_float64(pair64):
    t_model, g_model, sa_type = pair64
    t_model.eval()
    x = images(np.float64)
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    assert_close(g_model(nd(x)), expected, np.float64, "eval logits")
    hybrid = gluon_port(t_model, sa_type, "float64")
    hybrid.hybridize()
    assert_close(hybrid(nd(x)), expected, np.float64, "hybridized eval logits")


@pytest.mark.parametrize("sa_type", SA_TYPES)
def test_forward_eval_float32(sa_type):
    t_model = build_torch(sa_type, "float32").eval()
    g_model = gluon_port(t_model, sa_type, "float32")
    x = images(np.float32, seed=1)
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    assert_close(g_model(nd(x)), expected, np.float32, "eval logits")


def test_forward_train_and_running_statistics_float64(pair64):
    """Train mode: batch statistics in the forward, and torch's unbiased running-variance
    update reproduced by the Gluon batch norms (imperative)."""
    t_model, g_model, _ = pair64
    x = images(np.float64, seed=2)
    with restored(t_model, g_model):
        t_model.train()
        with torch.no_grad():
            expected = t_model(torch.from_numpy(x)).numpy()
        with autograd.train_mode():
            actual = g_model(nd(x))
        assert_close(actual, expected, np.float64, "train-mode logits")
        converted, native = to_canonical(gluon_state(g_model), "gluon"), torch_state(t_model)
        stats = [k for k in converted if k.endswith(("running_mean", "running_var"))]
        assert len(stats) > 20
        for k in stats:
            assert_close(converted[k], native[k], np.float64, k)


# --------------------------------------------------------------------------- gradients
def _soft_targets(labels):
    return smooth_uniform(labels, 10, 0.1, np.float64)


def test_gradients_float64(pair64):
    t_model, g_model, _ = pair64
    x, labels = images(np.float64, seed=3, n=GRAD_BATCH), np.array([3, 7, 0, 9])
    targets = _soft_targets(labels)
    with restored(t_model, g_model):
        t_model.train()
        tx = torch.tensor(x, requires_grad=True)
        t_loss = soft_loss(lambda z: torch.log_softmax(z, 1), t_model(tx), torch.from_numpy(targets))
        t_model.zero_grad()
        t_loss.backward()
        gx = nd(x)
        gx.attach_grad()
        with autograd.record():
            g_loss = soft_loss(lambda z: mx.nd.log_softmax(z, axis=1), g_model(gx), nd(targets))
        g_loss.backward()
        assert_close(g_loss, t_loss.detach().reshape(1), np.float64, "loss")
        assert_close(gx.grad, tx.grad, np.float64, "input gradient")
        g_grads = to_canonical({k: p.grad().asnumpy() for k, p in g_model._collect_params_with_prefix().items()
                                if p.grad_req != "null"}, "gluon")
        t_grads = {k: v.grad.numpy() for k, v in t_model.named_parameters()}
    assert_grads_close(g_grads, t_grads)


# --------------------------------------------------------------------------- training
def test_three_sgd_steps_float64(pair64):
    """The recipe's optimiser (SGD, momentum 0.9, weight decay 1e-4 on every parameter,
    cosine learning rate, label smoothing 0.1) for three steps: torch's SGD against its rule
    in Gluon (``torchsgd``, gluon_impl/torch_optim.py), losses, weights and statistics."""
    t_model, g_model, _ = pair64
    base_lr = 0.1 * TRAIN_BATCH / 256
    with restored(t_model, g_model):
        t_model.train()
        t_opt = torch.optim.SGD(t_model.parameters(), lr=base_lr, momentum=0.9, weight_decay=1e-4)
        trainer = mx.gluon.Trainer(g_model.collect_params(), "torchsgd",
                                   {"learning_rate": base_lr, "momentum": 0.9, "wd": 1e-4})
        rng = np.random.default_rng(4)
        for step in range(3):
            lr = cosine_lr(step, base_lr, 3)
            x = rng.standard_normal((TRAIN_BATCH, 3, 32, 32))
            targets = _soft_targets(rng.integers(0, 10, TRAIN_BATCH))
            for group in t_opt.param_groups:
                group["lr"] = lr
            t_loss = soft_loss(lambda z: torch.log_softmax(z, 1), t_model(torch.from_numpy(x)),
                               torch.from_numpy(targets))
            t_opt.zero_grad()
            t_loss.backward()
            t_opt.step()
            trainer.set_learning_rate(lr)
            with autograd.record():
                g_loss = soft_loss(lambda z: mx.nd.log_softmax(z, axis=1), g_model(nd(x)), nd(targets))
            g_loss.backward()
            trainer.step(1)
            assert_close(g_loss, t_loss.detach().reshape(1), np.float64, f"loss at step {step}")
        converted = to_canonical(gluon_state(g_model), "gluon")
        for k, v in torch_state(t_model).items():
            if k.endswith("num_batches_tracked"):
                continue
            assert_close(converted[k], v, np.float64, f"{k} after 3 steps")


# --------------------------------------------------------------------------- real case
def test_trained_on_cifar10_mini_same_predictions_in_gluon(cifar10_mini, tmp_path):
    """A reduced SAN trained briefly on real CIFAR-10 images by pytorch_impl.train_san (in
    this process, one thread), its model-last.pth read into the Gluon port (hybridized) by
    the naming rules: the same float32 logits and predictions on all 509 test images.

    The rate is small so that eval mode stays finite: after 20 batches of 8 the running
    statistics lag the weights, and each SA block multiplies the lag (on an Intel Xeon host,
    the test loss was 2.29 at lr 3e-4, 5e5 at 1e-3 and 8e25 at 2e-2, with one class predicted
    for every image; float64 gives the same logits, so it is the weights, not round-off)."""
    run_dir = tmp_path / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch_train_san.main(["--model", "san10_patchwise", "--dataset", "cifar10", "--data-dir",
                                  str(cifar10_mini), "--layers", "1", "1", "1", "1", "1",
                                  "--batch-size", "8", "--max-batches", "20", "--epochs", "1",
                                  "--lr", "0.0003", "--workers", "0", "--log-dir", str(run_dir)])
    finally:
        torch.set_num_threads(threads)
    state = read_state(run_dir / "model-last.pth")
    t_model = create_torch("san10_patchwise", **REDUCED)
    t_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    t_model.eval()
    g_model = gluon_port(t_model, "patchwise", "float32", state=state)
    g_model.hybridize()

    test = get_dataset("cifar10", "test", cifar10_mini)
    train = get_dataset("cifar10", "train", cifar10_mini)
    normalise = transforms.plain(train.mean, train.std)
    x = np.stack([normalise(image, None) for image in test.images])
    assert len(x) == 509
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    actual = g_model(nd(x)).asnumpy()
    assert np.abs(expected).max() > 0.1 and np.std(expected.argmax(1)) > 0  # trained, non-constant
    assert_close(actual, expected, np.float32, "logits on real CIFAR-10 test images")
    assert_same_argmax(actual, expected, "CIFAR-10 test predictions")
