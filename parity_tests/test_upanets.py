"""UPANets: PyTorch (native) == Paddle == MXNet Gluon, and the reference's parameter counts.

Each case builds UPANets16 in PyTorch with random weights and random BatchNorm statistics,
converts them through ``common.convert`` to Paddle and Gluon, and runs the recipe in all three
frameworks: eval and train-mode forwards, the gradients of every parameter, and SGD steps
(lr 0.1, momentum 0.9, weight decay 5e-4) under a cosine schedule, comparing logits, losses,
gradients, weights and BN running statistics with ``parity_tests.tolerances``. Channel and
Spatial Pixel Attention are also compared on their own in each of CPA's modes.
"""
import mxnet as mx
import numpy as np
import paddle
import pytest
import torch
import torch.nn.functional as TF
from mxnet import autograd

import gluon_impl.torch_optim  # noqa: F401  (registers 'torchsgd')
from common import checkpoint
from common.convert import from_canonical, match_state, to_canonical
from common.schedules import cosine_lr
from gluon_impl import create_model as gluon_model
from gluon_impl.models import upanets as gluon_upanets
from paddle_impl import create_model as paddle_model
from paddle_impl.models import upanets as paddle_upanets
from parity_tests.tolerances import assert_close, assert_float32_roundoff, assert_same_argmax
from pytorch_impl import create_model as torch_model
from pytorch_impl.models import upanets as torch_upanets

# The recipe's SGD. Paddle's Momentum kernel keeps momentum and weight decay in float32 even
# for float64 weights (measured: 4e-8 after three steps otherwise), so every framework runs
# with those float32 values and float64 then compares what Paddle really computes.
LR = 0.1
MOMENTUM, WD = float(np.float32(0.9)), float(np.float32(5e-4))
PORTS = ("paddle", "gluon")


# --------------------------------------------------------------------------- frameworks
def randomise_batch_norms(model, rng):
    """Random affine parameters and running statistics, so that names or layouts mixed up in
    a conversion cannot go unnoticed behind BN's default ones and zeros."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2),
                                  (m.running_mean, -0.2, 0.2), (m.running_var, 0.5, 1.5)):
                    t.copy_(torch.from_numpy(rng.uniform(lo, hi, t.shape)))


class Torch:
    name = "pytorch"

    def __init__(self, build, dtype):
        self.dtype = dtype
        self.model = build().to(torch.float64 if dtype == np.float64 else torch.float32)

    def load(self, canonical):
        self.model.load_state_dict({k: torch.from_numpy(np.asarray(v, self.dtype))
                                    for k, v in canonical.items()}, strict=True)

    def state(self):
        return {k: v.detach().numpy().copy() for k, v in self.model.state_dict().items()}

    def __call__(self, *inputs, train):
        self.model.train(train)
        return self.model(*[torch.from_numpy(np.asarray(x, self.dtype)) for x in inputs])

    def forward(self, *inputs, train):
        with torch.no_grad():
            return self(*inputs, train=train).numpy()

    def sgd_steps(self, batches, total):
        opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        trace = []
        for x, y in batches:
            opt.zero_grad()
            logits = self(x, train=True)
            loss = TF.cross_entropy(logits, torch.from_numpy(y))
            loss.backward()
            grads = {k: p.grad.numpy().copy() for k, p in self.model.named_parameters()}
            opt.step()
            sched.step()
            trace.append(dict(logits=logits.detach().numpy(), loss=loss.item(), grads=grads,
                              state=self.state()))
        return trace


class Paddle:
    name = "paddle"

    def __init__(self, build, dtype):
        self.dtype = dtype
        paddle.set_default_dtype(np.dtype(dtype).name)
        try:
            self.model = build()
        finally:
            paddle.set_default_dtype("float32")

    def load(self, canonical):
        shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        state = from_canonical(canonical, "paddle", shapes)
        match_state(state, shapes)
        self.model.set_state_dict({k: np.asarray(v, self.dtype) for k, v in state.items()})

    def state(self):
        return to_canonical({k: v.numpy() for k, v in self.model.state_dict().items()}, "paddle")

    def __call__(self, *inputs, train):
        self.model.train() if train else self.model.eval()
        return self.model(*[paddle.to_tensor(np.asarray(x, self.dtype)) for x in inputs])

    def forward(self, *inputs, train):
        with paddle.no_grad():
            return self(*inputs, train=train).numpy()

    def sgd_steps(self, batches, total):
        sched = paddle.optimizer.lr.CosineAnnealingDecay(LR, T_max=total)
        opt = paddle.optimizer.Momentum(learning_rate=sched, momentum=MOMENTUM,
                                        parameters=self.model.parameters(), weight_decay=WD)
        trace = []
        for x, y in batches:
            logits = self(x, train=True)
            loss = paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(y))
            loss.backward()
            grads = to_canonical({k: p.grad.numpy() for k, p in self.model.named_parameters()
                                  if not p.stop_gradient}, "paddle")
            opt.step()
            opt.clear_grad()
            sched.step()
            trace.append(dict(logits=logits.numpy(), loss=float(loss), grads=grads, state=self.state()))
        return trace


class Gluon:
    name = "gluon"

    def __init__(self, build, dtype):
        self.dtype = dtype
        self.model = build()
        self.model.initialize()
        self.model.cast(np.dtype(dtype).name)
        self.params = self.model._collect_params_with_prefix()

    def load(self, canonical):
        shapes = {k: p.shape for k, p in self.params.items()}
        state = from_canonical(canonical, "gluon", shapes)
        match_state(state, shapes)
        for k, p in self.params.items():
            p.set_data(mx.nd.array(state[k], dtype=self.dtype))

    def state(self):
        return to_canonical({k: p.data().asnumpy() for k, p in self.params.items()}, "gluon")

    def __call__(self, *inputs, train):
        arrays = [mx.nd.array(x, dtype=self.dtype) for x in inputs]
        with autograd.train_mode() if train else autograd.predict_mode():
            return self.model(*arrays)

    def forward(self, *inputs, train):
        return self(*inputs, train=train).asnumpy()

    def sgd_steps(self, batches, total):
        trainer = mx.gluon.Trainer(self.model.collect_params(), "torchsgd",
                                   {"learning_rate": LR, "momentum": MOMENTUM, "wd": WD})
        loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
        trace = []
        for step, (x, y) in enumerate(batches):
            trainer.set_learning_rate(cosine_lr(step, LR, total))
            with autograd.record():
                logits = self(x, train=True)
                loss = loss_fn(logits, mx.nd.array(y, dtype=self.dtype)).mean()
            loss.backward()
            grads = to_canonical({k: p.grad().asnumpy() for k, p in self.params.items()
                                  if p.grad_req != "null"}, "gluon")
            trainer.step(1)
            trace.append(dict(logits=logits.asnumpy(), loss=float(loss.asscalar()), grads=grads,
                              state=self.state()))
        return trace


FRAMEWORKS = {"pytorch": Torch, "paddle": Paddle, "gluon": Gluon}
BUILDERS = {"pytorch": torch_model, "paddle": paddle_model, "gluon": gluon_model}


def replicas(make_builder, dtype, seed, ports=PORTS):
    """The same randomly initialised network in the three frameworks (torch's initialisation
    drawn from ``seed``, so the case does not depend on which tests ran before)."""
    torch.manual_seed(seed)
    reference = Torch(make_builder("pytorch"), dtype)
    randomise_batch_norms(reference.model, np.random.default_rng(seed))
    canonical = reference.state()
    out = {"pytorch": reference}
    for name in ports:
        out[name] = FRAMEWORKS[name](make_builder(name), dtype)
        out[name].load(canonical)
    return out


def batches(count, size, img, num_classes, seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((size, 3, img, img)), rng.integers(0, num_classes, size))
            for _ in range(count)]


def assert_states_close(actual, expected, dtype, what):
    assert sorted(actual) == sorted(expected), what
    for k in expected:
        assert_close(actual[k], expected[k], dtype, f"{what}: {k}")


# Biases whose effect a normalisation removes: a per-pixel linear feeding a training-mode BN
# (CPA), and SPA's scalar bias, added to every channel before the head's layer norm over
# channels. Their true gradient is zero and the computed one is round-off of the size of the
# layer's weight gradient, so they are compared as part of their layer, weight and bias.
NORMALISED_BIASES = ("cp_ffc.bias", "cp_ffc_sc.bias", "sp_ffc.0.bias")


def by_layer(grads):
    out = dict(grads)
    for name in grads:
        if name.endswith(NORMALISED_BIASES):
            layer = name[:-len("bias")]
            out[layer + "weight+bias"] = np.concatenate([out.pop(layer + "weight").ravel(),
                                                         out.pop(name).ravel()])
    return out


# --------------------------------------------------------------------------- parameter counts
# The reference code's trainable parameters (BN running statistics excluded), from issue #5.
REFERENCE_COUNTS_M = {
    (10, 32): {"upanets16": 1.51, "upanets32": 6.02, "upanets64": 24.02},
    (100, 32): {"upanets16": 1.56, "upanets32": 6.11, "upanets64": 24.20},
    (200, 64): {"upanets16": 1.61, "upanets32": 6.21, "upanets64": 24.40},
}


@pytest.mark.parametrize("num_classes,img", list(REFERENCE_COUNTS_M))
def test_parameter_counts_match_the_reference(num_classes, img):
    for name, millions in REFERENCE_COUNTS_M[num_classes, img].items():
        model = torch_model(name, num_classes=num_classes, img_size=img)
        count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert round(count / 1e6, 2) == millions, (name, num_classes, img, count)


def test_ports_have_the_same_trainable_parameters():
    torch_count = sum(p.numel() for p in torch_model("upanets16").parameters())
    paddle_count = sum(int(np.prod(p.shape)) for p in paddle_model("upanets16").parameters()
                       if not p.stop_gradient)
    gluon_net = gluon_model("upanets16")
    gluon_count = sum(int(np.prod(p.shape)) for p in gluon_net.collect_params().values()
                      if p.grad_req != "null")
    assert paddle_count == torch_count == gluon_count == 1512431


def test_same_names_in_every_registry():
    from gluon_impl import list_models as gluon_list
    from paddle_impl import list_models as paddle_list
    from pytorch_impl import list_models as torch_list
    names = {"upanets16", "upanets32", "upanets64"}
    assert names <= set(torch_list()) and names <= set(paddle_list()) and names <= set(gluon_list())


# --------------------------------------------------------------------------- whole network
# (num_classes, img_size, batch, SGD steps): CIFAR-10 and CIFAR-100 at 32x32, Tiny ImageNet at
# 64x64 (one step there: the 64x64 network is the costly one in float64).
CASES = {"cifar10": (10, 32, 4, 3), "cifar100": (100, 32, 4, 3), "tiny_imagenet": (200, 64, 2, 1)}


def network_builder(num_classes, img):
    return lambda fw: (lambda: BUILDERS[fw]("upanets16", num_classes=num_classes, img_size=img))


@pytest.fixture(scope="module", params=list(CASES))
def float64_runs(request):
    """Eval logits, then the SGD trace (train logits, loss, gradients, state) per framework."""
    num_classes, img, size, steps = CASES[request.param]
    nets = replicas(network_builder(num_classes, img), np.float64, seed=1)
    data = batches(steps, size, img, num_classes, seed=2)
    out = {}
    for name, net in nets.items():
        out[name] = dict(eval=net.forward(data[0][0], train=False),
                         trace=net.sgd_steps(data, total=steps))
    return request.param, out


@pytest.mark.parametrize("port", PORTS)
def test_float64_eval_forward(float64_runs, port):
    case, runs = float64_runs
    assert_close(runs[port]["eval"], runs["pytorch"]["eval"], np.float64, f"{case} {port} eval logits")


@pytest.mark.parametrize("port", PORTS)
def test_float64_train_forward_and_loss(float64_runs, port):
    case, runs = float64_runs
    for step, (a, e) in enumerate(zip(runs[port]["trace"], runs["pytorch"]["trace"])):
        assert_close(a["logits"], e["logits"], np.float64, f"{case} {port} train logits, step {step}")
        assert_close(a["loss"], e["loss"], np.float64, f"{case} {port} loss, step {step}")


@pytest.mark.parametrize("port", PORTS)
def test_float64_gradients_of_every_parameter(float64_runs, port):
    case, runs = float64_runs
    for step, (a, e) in enumerate(zip(runs[port]["trace"], runs["pytorch"]["trace"])):
        assert_states_close(by_layer(a["grads"]), by_layer(e["grads"]), np.float64,
                            f"{case} {port} gradient, step {step}")


@pytest.mark.parametrize("port", PORTS)
def test_float64_sgd_cosine_steps_weights_and_running_stats(float64_runs, port):
    case, runs = float64_runs
    for step, (a, e) in enumerate(zip(runs[port]["trace"], runs["pytorch"]["trace"])):
        assert_states_close(a["state"], e["state"], np.float64, f"{case} {port} after step {step}")


def running_statistics(state):
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


@pytest.fixture(scope="module", params=list(CASES))
def float32_runs(request):
    """Eval logits, train-mode logits and the running statistics they update, per framework in
    float32 and for PyTorch in float64, on the same float32 weights and a batch of 8 float32
    images. (Train-mode BatchNorm over fewer images is worse conditioned: at batch 2 the
    head's BatchNorm1d alone put Paddle's float32 logits 36 float32 tolerances off, torch's 8.)"""
    num_classes, img, _, _ = CASES[request.param]
    (x, _), = batches(1, 8, img, num_classes, seed=4)
    x = x.astype(np.float32)
    nets = replicas(network_builder(num_classes, img), np.float32, seed=3)
    nets["exact"] = replicas(network_builder(num_classes, img), np.float64, seed=3, ports=())["pytorch"]
    out = {}
    for name, net in nets.items():
        out[name] = dict(eval=net.forward(x, train=False), train=net.forward(x, train=True),
                         stats=running_statistics(net.state()))
    return request.param, out


@pytest.mark.parametrize("port", PORTS)
def test_float32_forward_eval(float32_runs, port):
    case, runs = float32_runs
    assert_close(runs[port]["eval"], runs["pytorch"]["eval"], np.float32, f"{case} {port} eval logits")
    assert_same_argmax(runs[port]["eval"], runs["pytorch"]["eval"], f"{case} {port} eval")


@pytest.mark.parametrize("port", PORTS)
def test_float32_forward_train_mode_and_running_stats(float32_runs, port):
    """In train mode (batch statistics in some 60 BatchNorms and the layer norms) float32 is off
    the float64 result by more than the float32 tolerance in PyTorch itself (measured: 0.6 to
    3.5 tolerances at batch 8), so the port is held to :func:`assert_float32_roundoff`."""
    case, runs = float32_runs
    assert_same_argmax(runs[port]["train"], runs["pytorch"]["train"], f"{case} {port} train")
    assert_float32_roundoff(runs[port]["train"], runs["pytorch"]["train"], runs["exact"]["train"],
                            f"{case} {port} train-mode logits")
    assert runs[port]["stats"].keys() == runs["exact"]["stats"].keys()
    for key, value in runs["exact"]["stats"].items():
        assert_float32_roundoff(runs[port]["stats"][key], runs["pytorch"]["stats"][key], value,
                                f"{case} {port} {key}")


def test_gluon_hybridized_matches_pytorch(gluon_kernels):
    """Hybridized, the Gluon port gives torch's eval logits, and in train mode its logits and
    the gradients of every parameter (its BatchNorms then update the running variance with
    MXNet's kernel, see ``gluon_impl/layers.py``, so the train script trains imperatively)."""
    nets = replicas(network_builder(10, 32), np.float64, seed=5)
    (x, y), = batches(1, 4, 32, 10, seed=6)
    nets["gluon"].model.hybridize()
    assert_close(nets["gluon"].forward(x, train=False), nets["pytorch"].forward(x, train=False),
                 np.float64, "hybridized gluon eval logits")
    expected, actual = (nets[name].sgd_steps([(x, y)], total=1)[0] for name in ("pytorch", "gluon"))
    assert_close(actual["logits"], expected["logits"], np.float64, "hybridized gluon train logits")
    assert_states_close(by_layer(actual["grads"]), by_layer(expected["grads"]), np.float64,
                        "hybridized gluon gradient")


# --------------------------------------------------------------------------- CPA and SPA alone
MODULES = {"pytorch": torch_upanets, "paddle": paddle_upanets, "gluon": gluon_upanets}
# (in_dim, dim, stride, same, sc_x channels, sc_x side): the modes of the reference's README.
CPA_MODES = {
    "same_false": (6, 8, 1, False, 8, 6),      # sc_x from a conv of the same size: LN(CPA(x) + sc_x)
    "same_true": (6, 8, 1, True, 8, 6),        # plus a CPA shortcut of x
    "stride_2": (6, 8, 2, False, 8, 6),        # plus the shortcut, then 2x2 average pooling
    "sc_x_mismatch": (6, 8, 1, False, 5, 6),   # channel embedding alone: LN(CPA(x))
    "sc_x_mismatch_same": (6, 8, 1, True, 6, 6),  # quirk: the shortcut then projects sc_x
}


@pytest.mark.parametrize("mode", list(CPA_MODES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cpa_alone(mode, dtype, gluon_kernels):
    in_dim, dim, stride, same, sc_channels, side = CPA_MODES[mode]
    nets = replicas(lambda fw: (lambda: MODULES[fw].CPA(in_dim, dim, stride, same)), dtype, seed=7)
    rng = np.random.default_rng(8)
    x, sc_x = rng.standard_normal((3, in_dim, side, side)), rng.standard_normal((3, sc_channels, side, side))
    expected = {train: nets["pytorch"].forward(x, sc_x, train=train) for train in (False, True)}
    for port in PORTS:
        for train in (False, True):
            assert_close(nets[port].forward(x, sc_x, train=train), expected[train], dtype,
                         f"CPA {mode} {port} train={train}")
        assert_states_close(nets[port].state(), nets["pytorch"].state(), dtype, f"CPA {mode} {port}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_spa_alone(dtype):
    nets = replicas(lambda fw: (lambda: MODULES[fw].SPA(8)), dtype, seed=9)
    x = np.random.default_rng(10).standard_normal((2, 5, 8, 8))
    expected = nets["pytorch"].forward(x, train=False)
    assert expected.shape == (2, 5, 1, 1)
    for port in PORTS:
        assert_close(nets[port].forward(x, train=False), expected, dtype, f"SPA {port}")


@pytest.mark.parametrize("port", PORTS)
def test_layer_norm_float32_on_uncentred_activations(port, gluon_kernels):
    """The ports' layer norm over (C, H, W) in float32 and its gradient, on activations whose
    mean is large against their spread (where a one-pass variance loses digits: Paddle's
    kernel is 12.8 float32 tolerances off there), against torch's float64 layer norm of the
    same values; Gluon's also hybridized."""
    rng = np.random.default_rng(14)
    x = (rng.standard_normal((4, 16, 32, 32)) * 0.1 + 10).astype(np.float32)
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    exact = torch.from_numpy(x).double().requires_grad_()
    expected = TF.layer_norm(exact, x.shape[1:])
    expected.backward(torch.from_numpy(upstream).double())
    if port == "paddle":
        px = paddle.to_tensor(x, stop_gradient=False)
        out = paddle_upanets.layer_norm_chw(px)
        out.backward(paddle.to_tensor(upstream))
        runs = [(out.numpy(), px.grad.numpy(), "")]
    else:
        runs = []
        for hybridize in (False, True):
            block = mx.gluon.nn.HybridLambda(lambda F, t: gluon_upanets.layer_norm_chw(F, t))
            if hybridize:
                block.hybridize()
            gx = mx.nd.array(x)
            gx.attach_grad()
            with mx.autograd.record():
                out = block(gx)
            out.backward(mx.nd.array(upstream))
            runs.append((out.asnumpy(), gx.grad.asnumpy(), " hybridized" if hybridize else ""))
    for actual, grad, how in runs:
        assert actual.dtype == grad.dtype == np.float32
        assert_close(actual, expected.detach().numpy(), np.float32, f"{port}{how} layer norm")
        assert_close(grad, exact.grad.numpy(), np.float32, f"{port}{how} layer norm gradient")


def test_cpa_gradients_with_respect_to_its_inputs(gluon_kernels):
    """Gradients of a CPA (train mode, stride 2, shortcut) with respect to x and sc_x."""
    nets = replicas(lambda fw: (lambda: MODULES[fw].CPA(4, 6, 2, False)), np.float64, seed=11)
    rng = np.random.default_rng(12)
    x, sc_x, w = (rng.standard_normal(s) for s in ((2, 4, 6, 6), (2, 6, 6, 6), (2, 6, 3, 3)))
    tx, tsc = (torch.from_numpy(a).requires_grad_() for a in (x, sc_x))
    nets["pytorch"].model.train()
    (nets["pytorch"].model(tx, tsc) * torch.from_numpy(w)).sum().backward()
    px, psc = (paddle.to_tensor(a, stop_gradient=False) for a in (x, sc_x))
    paddle_cpa = nets["paddle"].model
    paddle_cpa.train()
    (paddle_cpa(px, psc) * paddle.to_tensor(w)).sum().backward()
    gx, gsc = (mx.nd.array(a, dtype="float64") for a in (x, sc_x))
    gx.attach_grad()
    gsc.attach_grad()
    with autograd.record():
        out = (nets["gluon"].model(gx, gsc) * mx.nd.array(w, dtype="float64")).sum()
    out.backward()
    for what, expected, got_paddle, got_gluon in (("x", tx.grad, px.grad, gx.grad), ("sc_x", tsc.grad, psc.grad, gsc.grad)):
        assert_close(got_paddle.numpy(), expected.numpy(), np.float64, f"paddle d/d{what}")
        assert_close(got_gluon.asnumpy(), expected.numpy(), np.float64, f"gluon d/d{what}")


# --------------------------------------------------------------------------- conversion
def test_conversion_round_trips_are_bit_exact(tmp_path):
    """PyTorch -> Paddle -> Gluon -> PyTorch through each framework's own file format."""
    nets = replicas(network_builder(10, 32), np.float32, seed=13)
    original = nets["pytorch"].state()
    paddle.save(nets["paddle"].model.state_dict(), str(tmp_path / "m.pdparams"))
    from_paddle = to_canonical(checkpoint.load_pdparams(tmp_path / "m.pdparams"), "paddle")
    gluon_net = gluon_model("upanets16")
    shapes = {k: p.shape for k, p in gluon_net._collect_params_with_prefix().items()}
    gluon_state = from_canonical(from_paddle, "gluon", shapes)
    match_state(gluon_state, shapes)
    checkpoint.save_gluon_params(gluon_state, tmp_path / "in.params")
    gluon_net.load_parameters(str(tmp_path / "in.params"))
    gluon_net.save_parameters(str(tmp_path / "out.params"))
    from_gluon = to_canonical(checkpoint.load_gluon_params(tmp_path / "out.params"), "gluon")
    back = torch_model("upanets16")
    back.load_state_dict({k: torch.from_numpy(v) for k, v in from_gluon.items()}, strict=True)
    torch.save(back.state_dict(), tmp_path / "m.pth")
    final = {k: v.numpy() for k, v in torch.load(tmp_path / "m.pth", weights_only=True).items()}
    for stage in (from_paddle, from_gluon, final):
        assert sorted(stage) == sorted(original)
        for k, v in original.items():
            assert stage[k].dtype == v.dtype and np.array_equal(stage[k], v), k

