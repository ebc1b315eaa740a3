"""AlexNet and AlexNet-SimAM: the native Paddle models against their MXNet Gluon port, with
weights converted by common/convert.py: SimAM alone (the cases of parity_tests/test_simam.py),
sizes and names, eval forward (float64, imperative
and hybridized; float32 on random and real images), the train-mode forward and every
parameter's gradient of the recipe's label-smoothing loss, three steps of the recipe's Adam,
checkpoints through every format and back bit for bit, and a checkpoint the Paddle train
script wrote on real CIFAR-10 images.

Dropout is treated as in ``parity_tests/test_alexnet.py``: the frameworks draw different
masks, so the float64 models are built with ``dropout=0.0`` (train mode is then the eval
computation, with gradients), and dropout itself is checked to be off in Gluon's inference
mode.
"""
import itertools

import mxnet as mx
import numpy as np
import paddle
import pytest
from mxnet import autograd

import gluon_impl
from common.convert import to_canonical
from common.data import get_dataset
from common.formats import EXTENSION, convert_state, names_of, read_state
from common.labels import smooth_uniform, soft_cross_entropy
from common.loader import BatchLoader
from common.mixup import MixupSampler, mixup
from common.schedules import cosine_lr
from gluon_impl import train_alexnet as gluon_recipe
from gluon_impl.models.alexnet import SimAM
from gluon_impl.weights import load_weights, model_shapes
from paddle_impl import train_alexnet as paddle_recipe
from paddle_impl.session import train_step as paddle_train_step
from parity_tests.test_alexnet import (MODELS, assert_float32_port_matches, float64_pair_of,
                                       numpy_state, paddle_logits, paddle_model, random_images)
from parity_tests.test_simam import inputs, run_paddle, simam_formula
from parity_tests.tolerances import assert_close
from scripts.convert import main as convert_cli


def gluon_port(paddle_net, name, dtype=np.float32, **kwargs):
    """The Gluon port in ``dtype`` holding ``paddle_net``'s weights, converted by
    common/convert.py."""
    net = gluon_impl.create_model(name, **kwargs)
    net.cast(np.dtype(dtype).name)
    state = convert_state(numpy_state(paddle_net), "paddle", "gluon", model_shapes(net))
    return load_weights(net, {k: v.astype(dtype) for k, v in state.items()})


def gluon_logits(net, images):
    """Inference-mode logits (dropout off) as numpy."""
    return net(mx.nd.array(images, dtype=images.dtype)).asnumpy()


def gluon_port_logits(paddle_net, name, images):
    return gluon_logits(gluon_port(paddle_net, name), images)


def gluon_grads(net):
    return to_canonical({k: p.grad().asnumpy() for k, p in net._collect_params_with_prefix().items()},
                        "gluon")


def gluon_state(net):
    return to_canonical({k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()},
                        "gluon")


def run_gluon_simam(x, upstream, e_lambda, hybridize):
    layer = SimAM(e_lambda)
    if hybridize:
        layer.hybridize()
    xt = mx.nd.array(x, dtype=x.dtype)
    xt.attach_grad()
    with autograd.record():
        out = layer(xt)
        (out * mx.nd.array(upstream, dtype=x.dtype)).sum().backward()
    return out.asnumpy(), xt.grad.asnumpy()


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
@pytest.mark.parametrize("e_lambda", [1e-5, 1e-4])
def test_simam_values_and_input_gradients_float64(e_lambda, hybridize):
    """Random, constant (zero variance), 1e4-magnitude and nearly constant channels (where
    lambda matters): output and input gradient per channel, and the paper's formula."""
    x = inputs(np.float64)
    upstream = np.random.default_rng(5).standard_normal(x.shape)
    p_out, p_grad = run_paddle(x, upstream, e_lambda)
    g_out, g_grad = run_gluon_simam(x, upstream, e_lambda, hybridize)
    assert_close(g_out, simam_formula(x, e_lambda), np.float64, "Gluon SimAM output vs formula")
    for c in range(4):
        assert_close(g_out[:, c], p_out[:, c], np.float64, f"SimAM output, channel {c}")
        assert_close(g_grad[:, c], p_grad[:, c], np.float64, f"SimAM input gradient, channel {c}")


def test_simam_float32():
    """As ``test_simam.py`` holds the PyTorch port (the nearly constant channel left to
    float64, where float32 measures round-off only)."""
    x = inputs(np.float32)[:, :3].copy()
    upstream = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    p_out, p_grad = run_paddle(x, upstream, 1e-5)
    g_out, g_grad = run_gluon_simam(x, upstream, 1e-5, hybridize=True)
    assert_close(g_out, p_out, np.float32, "SimAM output float32")
    assert_close(g_grad, p_grad, np.float32, "SimAM input gradient float32")


@pytest.fixture(scope="module", params=MODELS)
def float64_pair(request):
    """(name, Paddle float64 model without dropout, its Gluon port)."""
    return float64_pair_of(request.param, gluon_port)


@pytest.mark.parametrize("name", MODELS)
def test_size_and_names(name):
    shapes = model_shapes(gluon_impl.create_model(name))
    assert sum(int(np.prod(s)) for s in shapes.values()) == 7_524_042
    assert 0 not in itertools.chain(*shapes.values())  # every shape known before the first call
    paddle_shapes = {k: v.shape for k, v in to_canonical(numpy_state(paddle_model(name)), "paddle").items()}
    assert {k: tuple(s) for k, s in shapes.items()} == paddle_shapes


def test_forward_float64_imperative_and_hybridized(float64_pair):
    name, paddle_net, gluon_net = float64_pair
    images = random_images(2, np.float64)
    expected = paddle_logits(paddle_net, images)
    assert_close(gluon_logits(gluon_net, images), expected, np.float64, f"{name} logits")
    gluon_net.hybridize()
    try:
        assert_close(gluon_logits(gluon_net, images), expected, np.float64, f"{name} hybridized logits")
    finally:
        gluon_net.hybridize(False)


def test_train_forward_and_gradients_float64(float64_pair):
    """Train mode (``autograd.record()`` / ``train()``, dropout off): the logits, the
    recipe's loss (label smoothing 0.1) and the gradient of every parameter."""
    name, paddle_net, gluon_net = float64_pair
    images = random_images(2, np.float64, seed=1)
    targets = smooth_uniform(np.array([3, 7]), 10, 0.1, dtype=np.float64)
    paddle_net.train()
    paddle_out = paddle_net(paddle.to_tensor(images))
    paddle_loss = paddle_recipe.soft_cross_entropy(paddle_out, paddle.to_tensor(targets))
    paddle_loss.backward()
    with autograd.record():
        gluon_out = gluon_net(mx.nd.array(images, dtype=np.float64))
        gluon_loss = gluon_recipe.soft_cross_entropy(gluon_out, mx.nd.array(targets, dtype=np.float64))
    gluon_loss.backward()
    assert_close(gluon_out, paddle_out, np.float64, f"{name} train-mode logits")
    assert_close(gluon_loss.asnumpy().reshape(()), paddle_loss.numpy(), np.float64, f"{name} loss")
    paddle_grads = to_canonical({n: p.grad.numpy() for n, p in paddle_net.named_parameters()}, "paddle")
    grads = gluon_grads(gluon_net)
    assert set(grads) == set(paddle_grads) and len(grads) == 16
    for n, grad in grads.items():
        assert np.abs(grad).max() > 0, n
        assert_close(grad, paddle_grads[n], np.float64, f"{name} gradient of {n}")
    paddle_net.clear_gradients()


def test_label_smoothing_loss_and_gradient_for_wide_logits():
    """The Gluon loss on logits spread by 100 (where Paddle's CPU ``log_softmax`` would clip)
    equals the numpy reference, and so does its gradient, ``(softmax - targets) / N``."""
    logits = np.array([[4.3, -4.1, 13.0, 7.05, 2.2, 45.9, -47.5, -3.9, 3.2, -54.6],
                       [0.5, 1.5, -2.0, 0.0, 3.0, -1.0, 2.5, -0.5, 1.0, -3.0]])
    targets = smooth_uniform(np.array([6, 4]), 10, 0.1, dtype=np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    x = mx.nd.array(logits, dtype=np.float64)
    x.attach_grad()
    with autograd.record():
        loss = gluon_recipe.soft_cross_entropy(x, mx.nd.array(targets, dtype=np.float64))
    loss.backward()
    assert_close(loss.asnumpy().reshape(()), soft_cross_entropy(logits, targets), np.float64, "Gluon loss")
    assert_close(x.grad, (p - targets) / 2, np.float64, "Gluon loss gradient")


def test_dropout_is_off_in_inference_and_on_in_training():
    """The recipe's dropout 0.5: inference gives the logits of the same weights without
    dropout (bit for bit); training (``autograd.record()``) drops units."""
    paddle.seed(10)
    source = paddle_model("alexnet")
    with_dropout, without = gluon_port(source, "alexnet"), gluon_port(source, "alexnet", dropout=0.0)
    images = random_images(2, np.float32, seed=2)
    np.testing.assert_array_equal(gluon_logits(with_dropout, images), gluon_logits(without, images))
    with autograd.record():
        train = with_dropout(mx.nd.array(images)).asnumpy()
    assert not np.allclose(train, gluon_logits(without, images))


def test_three_adam_steps_float64():
    """The train scripts' own step (Adam, coupled L2 weight decay 1e-5, label smoothing 0.1,
    mixup 0.4) at the cosine rates of a 3-step run, on the recipe's augmented batches of real
    digits, as ``parity_tests/test_alexnet.py`` runs it for the PyTorch port; AlexNet-SimAM
    alone, whose layers are AlexNet's and SimAM (three float64 Paddle steps cost about 7 s a
    model). The biases start random, not zero, so that their weight decay counts from the
    first step. Measured, in float64 tolerances: ``torchadam`` 0.04; MXNet's own ``adam``
    3e8 (see ``gluon_impl/torch_optim.py``), and ``torchadam`` without decay on the
    biases 2e8."""
    name, mixup_alpha = "alexnet_simam", 0.4
    paddle.seed(9)
    paddle_net = paddle_model(name, np.float64, dropout=0.0)
    rng = np.random.default_rng(9)
    for n, p in paddle_net.named_parameters():
        if n.endswith("bias"):
            p.set_value(rng.uniform(-0.1, 0.1, p.shape))
    gluon_net = gluon_port(paddle_net, name, np.float64, dropout=0.0)
    paddle_net.train()
    paddle_opt = paddle_recipe.make_optimizer(paddle_net, 5e-4, 1e-5)
    trainer = gluon_recipe.make_optimizer(gluon_net, 5e-4, 1e-5)
    train = get_dataset("digits", "train")
    loader = BatchLoader(train, 2, paddle_recipe.recipe_transforms()[0](None, None),
                         shuffle=True, drop_last=True, seed=42, workers=0)
    for step, (images, labels) in zip(range(3), loader.epoch(0)):
        images = images.astype(np.float64)
        targets = smooth_uniform(labels, 10, 0.1, dtype=np.float64)
        images, targets = mixup(images, targets, MixupSampler(mixup_alpha, 42)(0, step))
        lr = cosine_lr(step, 5e-4, 3)
        paddle_loss, _ = paddle_train_step(paddle_net, paddle_opt, paddle.to_tensor(images),
                                                  paddle.to_tensor(targets), lr)
        gluon_loss, _ = gluon_recipe.train_step(gluon_net, trainer, mx.nd.array(images, dtype=np.float64),
                                                mx.nd.array(targets, dtype=np.float64), lr)
        assert_close(gluon_loss.asnumpy().reshape(()), paddle_loss.numpy(), np.float64,
                     f"{name} loss at step {step}")
    paddle_state = to_canonical(numpy_state(paddle_net), "paddle")
    for n, value in gluon_state(gluon_net).items():
        assert_close(value, paddle_state[n], np.float64, f"{name} {n} after 3 Adam steps")


@pytest.mark.parametrize("name", MODELS)
def test_forward_float32_random(name):
    paddle.seed(7)
    assert_float32_port_matches(paddle_model(name), name, random_images(4, np.float32),
                                f"{name} Gluon logits", port_logits=gluon_port_logits)


# from a Gluon file, each format to every other one the chain of
# tests/test_convert_models.py::test_cli_every_direction_bit_exact does not take
# (.pth -> .params -> .pdparams -> .safetensors and back): with it, all 12 directions
CYCLE = ("gluon", "safetensors", "pytorch", "paddle", "pytorch", "safetensors", "gluon")


def test_every_direction_bit_exact(tmp_path, capsys):
    """A checkpoint Gluon wrote (``save_parameters``) goes by the CLI through ``CYCLE`` and
    every file holds the same tensors, bit for bit; so does the ``.pth`` of the model's
    ``export`` file (``arg:`` names; ``--model`` needed: AlexNet's are AlexNet-SimAM's)."""
    mx.random.seed(11)
    net = gluon_impl.create_model("alexnet_simam")
    net.initialize(mx.init.Normal(0.05))
    net.collect_params(".*bias").initialize(mx.init.Normal(0.05), force_reinit=True)
    files = [tmp_path / f"0-{CYCLE[0]}{EXTENSION[CYCLE[0]]}"]
    net.save_parameters(str(files[0]))
    original = gluon_state(net)
    for i, fmt in enumerate(CYCLE[1:], start=1):
        files.append(tmp_path / f"{i}-{fmt}{EXTENSION[fmt]}")
        assert convert_cli([str(files[-2]), str(files[-1]), "--model", "alexnet_simam"]) == 0, \
            capsys.readouterr().err
        converted = to_canonical(read_state(files[-1]), names_of(fmt))
        assert converted.keys() == original.keys(), files[-2:]
        for k, v in original.items():
            assert converted[k].dtype == v.dtype and np.array_equal(converted[k], v), (files[-2:], k)
    net.hybridize()
    net(mx.nd.zeros((1, 3, 128, 128)))
    net.export(str(tmp_path / "exported"))
    assert convert_cli([str(tmp_path / "exported-0000.params"), str(tmp_path / "exported.pth"),
                        "--model", "alexnet_simam"]) == 0, capsys.readouterr().err
    converted = read_state(tmp_path / "exported.pth")
    assert converted.keys() == original.keys()
    assert all(np.array_equal(converted[k], v) for k, v in original.items())


def test_paddle_run_on_cifar10_converts_to_same_predictions(paddle_cifar10_run):
    """The Gluon port with the converted checkpoint of the Paddle script's run on real
    CIFAR-10 images (``paddle_cifar10_run`` of ``parity_tests/conftest.py``, shared with the
    PyTorch port's test) predicts every test image as Paddle does."""
    paddle_net, images, native = paddle_cifar10_run
    assert_float32_port_matches(paddle_net, "alexnet_simam", images,
                                "trained AlexNet-SimAM on the CIFAR-10 test images, Gluon",
                                len(native[1]), port_logits=gluon_port_logits, native=native)
