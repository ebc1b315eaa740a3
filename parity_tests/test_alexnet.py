"""AlexNet and AlexNet-SimAM: the native Paddle models against their PyTorch port, with
weights converted by common/convert.py: sizes and names, a bit-exact checkpoint round trip,
eval forward (float64 and float32, random and real images), every parameter's gradient of
the recipe's label-smoothing loss, three Adam steps of the recipe, and a checkpoint the
Paddle train script wrote on real CIFAR-10 images."""

import numpy as np
import paddle
import pytest
import torch

import paddle_impl
import pytorch_impl
from common import transforms
from common.checkpoint import load_pdparams
from common.convert import to_canonical
from common.data import IMAGENET_MEAN, IMAGENET_STD, get_dataset
from common.formats import convert_state
from common.labels import smooth_uniform, soft_cross_entropy
from common.loader import BatchLoader
from common.mixup import MixupSampler, mixup
from common.schedules import cosine_lr
from paddle_impl import train_alexnet as paddle_recipe
from paddle_impl.session import train_step as paddle_train_step
from parity_tests.tolerances import assert_close, assert_float32_roundoff, assert_same_argmax
from pytorch_impl import train_alexnet as torch_recipe
from pytorch_impl.session import train_step as torch_train_step

MODELS = ("alexnet", "alexnet_simam")
TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def paddle_model(name, dtype=np.float32, **kwargs):
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype(np.dtype(dtype).name)
    try:
        return paddle_impl.create_model(name, **kwargs)
    finally:
        paddle.set_default_dtype(previous)


def numpy_state(model):
    """A Paddle or torch model's state as numpy arrays (its own names and layouts)."""
    return {k: v.numpy() for k, v in model.state_dict().items()}


def port(paddle_net, name, dtype=np.float32, **kwargs):
    """The PyTorch port holding ``paddle_net``'s weights, converted by common/convert.py."""
    net = pytorch_impl.create_model(name, **kwargs).to(TORCH_DTYPES[dtype])
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    state = convert_state(numpy_state(paddle_net), "paddle", "pytorch", shapes)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return net


def random_images(n, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 128, 128)).astype(dtype)


def forward(paddle_net, torch_net, images):
    paddle_net.eval()
    torch_net.eval()
    with paddle.no_grad(), torch.no_grad():
        return (paddle_net(paddle.to_tensor(images)).numpy(),
                torch_net(torch.from_numpy(images)).numpy())


def float64_pair_of(name, make_port):
    """(name, Paddle float64 model without dropout, its port ``make_port(net, name, dtype,
    **kwargs)``)."""
    paddle.seed(6)
    net = paddle_model(name, np.float64, dropout=0.0)
    return name, net, make_port(net, name, np.float64, dropout=0.0)


@pytest.fixture(scope="module", params=MODELS)
def float64_pair(request):
    """(name, Paddle float64 model without dropout, its PyTorch port)."""
    return float64_pair_of(request.param, port)


@pytest.mark.parametrize("name", MODELS)
def test_size_and_names(name):
    paddle_net, torch_net = paddle_impl.create_model(name), pytorch_impl.create_model(name)
    assert sum(int(np.prod(p.shape)) for p in paddle_net.parameters()) == 7_524_042
    assert sum(p.numel() for p in torch_net.parameters()) == 7_524_042
    canonical = to_canonical(numpy_state(paddle_net), "paddle")
    assert {k: v.shape for k, v in canonical.items()} == \
        {k: tuple(v.shape) for k, v in torch_net.state_dict().items()}
    assert numpy_state(paddle_net)["classifier.0.weight"].shape == (1152, 2048)  # [in, out]
    assert paddle_net.features[0].weight.dtype == paddle.float32
    assert next(torch_net.parameters()).dtype == torch.float32


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    """.pdparams (read without unpickling code) -> .pth -> .pdparams gives the same bits."""
    source = paddle_model("alexnet_simam")
    paddle.save(source.state_dict(), str(tmp_path / "a.pdparams"))
    torch_net = pytorch_impl.create_model("alexnet_simam")
    torch_shapes = {k: tuple(v.shape) for k, v in torch_net.state_dict().items()}
    state = convert_state(load_pdparams(tmp_path / "a.pdparams"), "paddle", "pytorch", torch_shapes)
    torch_net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    torch.save(torch_net.state_dict(), tmp_path / "a.pth")
    back_net = paddle_model("alexnet_simam")
    back_shapes = {k: tuple(v.shape) for k, v in back_net.state_dict().items()}
    loaded = {k: v.numpy() for k, v in torch.load(tmp_path / "a.pth", weights_only=True).items()}
    back = convert_state(loaded, "pytorch", "paddle", back_shapes)
    back_net.set_state_dict(back)
    original = numpy_state(source)
    assert set(back) == set(original)
    for k, v in numpy_state(back_net).items():
        assert v.dtype == original[k].dtype and np.array_equal(v, original[k]), k


def test_forward_float64(float64_pair):
    name, paddle_net, torch_net = float64_pair
    expected, actual = forward(paddle_net, torch_net, random_images(2, np.float64))
    assert_close(actual, expected, np.float64, f"{name} logits")


def paddle_logits(paddle_net, images):
    """``paddle_net``'s eval-mode logits of ``images``, as numpy."""
    paddle_net.eval()
    with paddle.no_grad():
        return paddle_net(paddle.to_tensor(images)).numpy()


def torch_port_logits(paddle_net, name, images):
    """The float32 PyTorch port's eval-mode logits of ``images``, with ``paddle_net``'s weights."""
    torch_net = port(paddle_net, name).eval()
    with torch.no_grad():
        return torch_net(torch.from_numpy(images)).numpy()


def native_logits(paddle_net, name, images, exact_count=None):
    """The float32 native model's logits of ``images``, and its exact ones (the same weights
    in float64) of the first ``exact_count`` images (all when None)."""
    native64 = paddle_model(name, np.float64)
    native64.set_state_dict({k: v.astype(np.float64) for k, v in numpy_state(paddle_net).items()})
    return (paddle_logits(paddle_net, images),
            paddle_logits(native64, images[:exact_count].astype(np.float64)))


def assert_float32_port_matches(paddle_net, name, images, what, exact_count=None,
                                port_logits=torch_port_logits, native=None):
    """The float32 port (``port_logits(paddle_net, name, images)``, by default the PyTorch
    port's) against the native model's exact logits (the same weights in float64; on the
    first ``exact_count`` images when given) by the whole-network float32 rule of
    ``parity_tests/tolerances.py``, and the same argmax as the native float32 model on every
    image. ``native``: :func:`native_logits` of these images, where computed already.

    Two float32 runs are not compared elementwise: each framework's own float32 round-off
    on these logits is 0.2-1.8 float32 tolerances (measured against float64, random weights,
    random and CIFAR inputs), so their difference can reach several without any semantic
    difference, which the float64 tests rule out."""
    native32, exact = native or native_logits(paddle_net, name, images, exact_count)
    port32 = port_logits(paddle_net, name, images)
    some = slice(exact_count)
    assert_float32_roundoff(port32[some], native32[some], exact, f"{what}: float32 port vs native")
    assert_same_argmax(port32, native32, f"{what}: float32 predictions")
    return port32


@pytest.mark.parametrize("name", MODELS)
def test_forward_float32_random(name):
    paddle.seed(7)
    assert_float32_port_matches(paddle_model(name), name, random_images(4, np.float32),
                                f"{name} logits")


def cifar_test_images(folder, count=None):
    test = get_dataset("cifar10", "test", folder)
    loader = BatchLoader(test, 128, transforms.alexnet_test(IMAGENET_MEAN, IMAGENET_STD))
    images = np.concatenate([images for images, _ in loader])
    return images if count is None else images[:count]


@pytest.mark.parametrize("name", MODELS)
def test_forward_float32_real_images(name, cifar10_mini):
    paddle.seed(8)
    assert_float32_port_matches(paddle_model(name), name, cifar_test_images(cifar10_mini, 16),
                                f"{name} logits on CIFAR-10 images")


def test_gradients_float64(float64_pair):
    """Gradient of every parameter of the recipe's loss (label smoothing 0.1), train mode,
    dropout off."""
    name, paddle_net, torch_net = float64_pair
    images = random_images(2, np.float64, seed=1)
    targets = smooth_uniform(np.array([3, 7]), 10, 0.1, dtype=np.float64)
    paddle_net.train()
    torch_net.train()
    paddle_recipe.soft_cross_entropy(paddle_net(paddle.to_tensor(images)),
                                     paddle.to_tensor(targets)).backward()
    torch_recipe.soft_cross_entropy(torch_net(torch.from_numpy(images)),
                                    torch.from_numpy(targets)).backward()
    paddle_grads = to_canonical({n: p.grad.numpy() for n, p in paddle_net.named_parameters()},
                                "paddle")
    torch_grads = {n: p.grad.numpy() for n, p in torch_net.named_parameters()}
    assert set(paddle_grads) == set(torch_grads) and len(torch_grads) == 16
    for n, grad in torch_grads.items():
        assert np.abs(grad).max() > 0, n
        assert_close(grad, paddle_grads[n], np.float64, f"{name} gradient of {n}")
    paddle_net.clear_gradients()
    torch_net.zero_grad()


def test_label_smoothing_loss_and_gradient_for_wide_logits():
    """Logits spread by 100 (as early in training): both scripts' loss and its gradient
    equal the numpy reference; Paddle's CPU ``F.log_softmax`` would clip at -64 here."""
    logits = np.array([[4.3, -4.1, 13.0, 7.05, 2.2, 45.9, -47.5, -3.9, 3.2, -54.6],
                       [0.5, 1.5, -2.0, 0.0, 3.0, -1.0, 2.5, -0.5, 1.0, -3.0]])
    labels = np.array([6, 4])
    targets = smooth_uniform(labels, 10, 0.1, dtype=np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    expected_grad = (p - targets) / len(labels)
    pl, tl = paddle.to_tensor(logits, stop_gradient=False), torch.tensor(logits, requires_grad=True)
    paddle_loss = paddle_recipe.soft_cross_entropy(pl, paddle.to_tensor(targets))
    torch_loss = torch_recipe.soft_cross_entropy(tl, torch.from_numpy(targets))
    paddle_loss.backward()
    torch_loss.backward()
    expected = soft_cross_entropy(logits, targets)
    assert_close(paddle_loss.numpy(), expected, np.float64, "Paddle recipe loss")
    assert_close(torch_loss.detach().numpy(), expected, np.float64, "torch recipe loss")
    assert_close(pl.grad.numpy(), expected_grad, np.float64, "Paddle recipe loss gradient")
    assert_close(tl.grad.numpy(), expected_grad, np.float64, "torch recipe loss gradient")


@pytest.mark.parametrize("name, mixup_alpha", [(m, 0.0) for m in MODELS] + [("alexnet_simam", 0.4)])
def test_three_adam_steps_float64(name, mixup_alpha):
    """The train scripts' own step (Adam, coupled L2 weight decay 1e-5, label smoothing 0.1,
    optional mixup) at the cosine rates of a 3-step run, on the recipe's augmented batches
    of real digits."""
    paddle.seed(9)
    paddle_net = paddle_model(name, np.float64, dropout=0.0)
    torch_net = port(paddle_net, name, np.float64, dropout=0.0)
    paddle_net.train()
    torch_net.train()
    paddle_opt = paddle_recipe.make_optimizer(paddle_net, 5e-4, 1e-5)
    torch_opt = torch_recipe.make_optimizer(torch_net, 5e-4, 1e-5)
    train = get_dataset("digits", "train")
    loader = BatchLoader(train, 2, paddle_recipe.recipe_transforms()[0](None, None),
                         shuffle=True, drop_last=True, seed=42, workers=0)
    for step, (images, labels) in zip(range(3), loader.epoch(0)):
        images = images.astype(np.float64)
        targets = smooth_uniform(labels, 10, 0.1, dtype=np.float64)
        if mixup_alpha:
            images, targets = mixup(images, targets, MixupSampler(mixup_alpha, 42)(0, step))
        lr = cosine_lr(step, 5e-4, 3)
        paddle_loss, _ = paddle_train_step(paddle_net, paddle_opt, paddle.to_tensor(images),
                                                  paddle.to_tensor(targets), lr)
        torch_loss, _ = torch_train_step(torch_net, torch_opt, torch.from_numpy(images),
                                                torch.from_numpy(targets), lr)
        assert_close(torch_loss, paddle_loss, np.float64, f"{name} loss at step {step}")
    paddle_state = to_canonical(numpy_state(paddle_net), "paddle")
    for n, value in numpy_state(torch_net).items():
        assert_close(value, paddle_state[n], np.float64, f"{name} {n} after 3 Adam steps")


def test_paddle_run_on_cifar10_converts_to_same_predictions(paddle_cifar10_run):
    """The PyTorch port with the converted checkpoint of the Paddle script's run on real
    CIFAR-10 images (``paddle_cifar10_run`` of ``parity_tests/conftest.py``) predicts every
    test image as Paddle does."""
    paddle_net, images, native = paddle_cifar10_run
    assert_float32_port_matches(paddle_net, "alexnet_simam", images,
                                "trained AlexNet-SimAM on the CIFAR-10 test images",
                                len(native[1]), native=native)
