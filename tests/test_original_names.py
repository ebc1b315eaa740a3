"""The parameter names of the original code, pinned: a checkpoint the original wrote loads
into this project's model and converts through the CLI, identified from its tensors alone.

For UPANets (hanktseng131415go/UPANets, ``models/upanets.py``, ``main.py``), SAN (hszhao/SAN,
``model/san.py``, ``tool/train.py``) and AlexNet / AlexNet-SimAM (the PaddlePaddle notebook
the project reproduces, ``shared/seeds/004_*.txt``) this file enumerates the name -> shape
list the original's constructors produce, following their loops and layer lists (written
here from reading the original, not from the project's models), and proves:

* the project's state_dict has exactly those names and shapes, except the
  ``num_batches_tracked`` counters of torch's BatchNorm, which the project's BatchNorm does
  not keep (``pytorch_impl/layers.py``) and the converter drops (``common/convert.py``);
* a state_dict with the original's names, counters included, loads with ``strict=True``;
* the checkpoint file each original writes (UPANets: ``{'net', 'acc', 'epoch'}`` with
  DataParallel ``module.`` names; SAN: ``{'epoch', 'state_dict', 'optimizer', 'scheduler',
  'top1_val', 'top5_val'}`` with ``module.`` names; AlexNet: ``paddle.save`` of the model's
  state_dict) converts with ``python -m scripts.convert SRC DST`` and no ``--model`` through
  every format of the model's frameworks and back, every tensor bit for bit.
"""

import numpy as np
import paddle
import pytest
import torch

import paddle_impl
import pytorch_impl
from scripts import convert as cli

COUNTER = "num_batches_tracked"


# --------------------------------------------------------------------------- torch layers
# The (name, shape) entries each torch layer registers, in registration order.
def conv(prefix, c_in, c_out, kernel, bias=True):
    return [(f"{prefix}.weight", (c_out, c_in, kernel, kernel))] + ([(f"{prefix}.bias", (c_out,))] if bias else [])


def batch_norm(prefix, channels):
    return [(f"{prefix}.{leaf}", (channels,)) for leaf in ("weight", "bias", "running_mean", "running_var")] \
        + [(f"{prefix}.{COUNTER}", ())]


def linear(prefix, c_in, c_out):
    return [(f"{prefix}.weight", (c_out, c_in)), (f"{prefix}.bias", (c_out,))]


# --------------------------------------------------------------------------- UPANets
def upanets_cpa(prefix, in_dim, dim, stride=1, same=False):
    """``CPA.__init__``: cp_ffc, bn, and with stride 2 or ``same`` cp_ffc_sc, bn_sc."""
    names = linear(f"{prefix}.cp_ffc", in_dim, dim) + batch_norm(f"{prefix}.bn", dim)
    if stride == 2 or same:
        names += linear(f"{prefix}.cp_ffc_sc", in_dim, dim) + batch_norm(f"{prefix}.bn_sc", dim)
    return names


def upanets_block(prefix, in_planes, planes, stride=1, same=False, w=2):
    """``upa_block.__init__`` (l=2): cnn = conv, BN, ReLU, conv, BN, ReLU; att = CPA."""
    return (conv(f"{prefix}.cnn.0", in_planes, planes * w, 3, bias=False)
            + batch_norm(f"{prefix}.cnn.1", planes * w)
            + conv(f"{prefix}.cnn.3", planes * w, planes, 3, bias=False)
            + batch_norm(f"{prefix}.cnn.4", planes)
            + upanets_cpa(f"{prefix}.att", in_planes, planes, stride, same))


def upanets_original(f, c, block, img):
    """``UPANets(f, c, block, img)`` -> ``upanets.__init__`` and ``_make_layer``, loop for loop."""
    w = 2
    names = (conv("root.0", 3, f * w, 3, bias=False) + batch_norm("root.1", f * w)
             + conv("root.3", f * w, f, 3, bias=False) + batch_norm("root.4", f)
             + upanets_cpa("emb", 3, f, same=True))
    in_planes = f
    num_blocks = 4 * block
    for layer, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2), (8, 2)), start=1):
        stage_planes = f * mult
        planes = stage_planes // num_blocks
        strides = [stride] + [1] * (num_blocks - 1)
        for i, s in enumerate(strides):  # the original appends to ``strides`` as it iterates
            prefix = f"layer{layer}.{i}"
            if i == 0 and s == 1:
                names += upanets_block(prefix, stage_planes, stage_planes, s, same=True)
                strides.append(1)
                in_planes = stage_planes
            elif i != 0 and s == 1:
                names += upanets_block(prefix, in_planes, planes, s)
                in_planes += planes
            else:
                names += upanets_block(prefix, in_planes, stage_planes, s)
                strides.append(1)
                in_planes = stage_planes
    for i, side in enumerate((img, img, int(img * 0.5), int(img * 0.25), int(img * 0.125))):
        names += linear(f"spa{i}.sp_ffc.0", side ** 2, 1)
    return names + linear("linear", f * 31, c) + batch_norm("bn", f * 31)


# --------------------------------------------------------------------------- SAN
def san_sam(prefix, sa_type, in_planes, rel_planes, out_planes, share_planes, k):
    """``SAM.__init__``: conv1-3, conv_w (BN, ReLU, conv, BN, ReLU, conv), pairwise conv_p."""
    names = (conv(f"{prefix}.conv1", in_planes, rel_planes, 1) + conv(f"{prefix}.conv2", in_planes, rel_planes, 1)
             + conv(f"{prefix}.conv3", in_planes, out_planes, 1))
    if sa_type == 0:
        return (names + batch_norm(f"{prefix}.conv_w.0", rel_planes + 2)
                + conv(f"{prefix}.conv_w.2", rel_planes + 2, rel_planes, 1, bias=False)
                + batch_norm(f"{prefix}.conv_w.3", rel_planes)
                + conv(f"{prefix}.conv_w.5", rel_planes, out_planes // share_planes, 1)
                + conv(f"{prefix}.conv_p", 2, 2, 1))
    return (names + batch_norm(f"{prefix}.conv_w.0", rel_planes * (k ** 2 + 1))
            + conv(f"{prefix}.conv_w.2", rel_planes * (k ** 2 + 1), out_planes // share_planes, 1, bias=False)
            + batch_norm(f"{prefix}.conv_w.3", out_planes // share_planes)
            + conv(f"{prefix}.conv_w.5", out_planes // share_planes, k ** 2 * out_planes // share_planes, 1))


def san_original(sa_type, layers, kernels, num_classes):
    """``san(sa_type, layers, kernels, num_classes)`` -> ``SAN.__init__``, ``_make_layer`` and
    ``Bottleneck.__init__`` (rel = planes // 16, mid = planes // 4, share_planes 8)."""
    c = 64
    names = conv("conv_in", 3, c, 1, bias=False) + batch_norm("bn_in", c)
    for stage, widen in enumerate((1, 4, 2, 2, 2)):
        c *= widen
        names += conv(f"conv{stage}", c // widen, c, 1, bias=False) + batch_norm(f"bn{stage}", c)
        for j in range(layers[stage]):
            prefix = f"layer{stage}.{j}"
            names += (batch_norm(f"{prefix}.bn1", c)
                      + san_sam(f"{prefix}.sam", sa_type, c, c // 16, c // 4, 8, kernels[stage])
                      + batch_norm(f"{prefix}.bn2", c // 4) + conv(f"{prefix}.conv", c // 4, c, 1))
    return names + linear("fc", c, num_classes)


# config/imagenet/imagenet_san10_{pairwise,patchwise}.yaml
SAN10 = dict(layers=(2, 1, 2, 4, 1), kernels=(3, 7, 7, 7, 7), num_classes=1000)


# --------------------------------------------------------------------------- AlexNet (Paddle)
def _alexnet_features(simam):
    """The seed's ``self.features`` Sequential, layer by layer (SimAM after every conv)."""
    layers = []
    for conv_spec, pool in (((3, 48, 11), True), ((48, 128, 5), True), ((128, 192, 3), False),
                            ((192, 192, 3), False), ((192, 128, 3), True)):
        layers += [("Conv2D",) + conv_spec] + (["SimAM"] if simam else []) + ["ReLU"] + (["MaxPool2D"] if pool else [])
    return layers


# The seed's ``self.classifier`` Sequential.
ALEXNET_CLASSIFIER = [("Linear", 3 * 3 * 128, 2048), "ReLU", "Dropout", ("Linear", 2048, 2048), "ReLU", "Dropout",
                      ("Linear", 2048, 10)]


def alexnet_paddle_original(simam):
    """Paddle state_dict names of the seed's ``AlexNet`` / ``AlexNet_SimAM(num_classes=10)``:
    Conv2D weight [out, in, k, k] and bias, Linear weight **[in, out]** and bias."""
    names = []
    for group, layers in (("features", _alexnet_features(simam)), ("classifier", ALEXNET_CLASSIFIER)):
        for i, layer in enumerate(layers):
            if layer[0] == "Conv2D":
                _, c_in, c_out, k = layer
                names += [(f"{group}.{i}.weight", (c_out, c_in, k, k)), (f"{group}.{i}.bias", (c_out,))]
            elif layer[0] == "Linear":
                _, c_in, c_out = layer
                names += [(f"{group}.{i}.weight", (c_in, c_out)), (f"{group}.{i}.bias", (c_out,))]
    return names


# --------------------------------------------------------------------------- helpers
def without_counters(items):
    """``{name: value}`` of ``(name, value)`` pairs, less the BatchNorm step counters."""
    return {k: v for k, v in items if not k.endswith(COUNTER)}


def random_state(names, seed=0):
    """Random float32 values (positive running variances) and int64 step counters."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in names:
        if name.endswith(COUNTER):
            state[name] = np.array(rng.integers(1, 10_000), np.int64)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            state[name] = rng.normal(size=shape).astype(np.float32)
    return state


def torch_shapes(name, **kwargs):
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in pytorch_impl.create_model(name, **kwargs).state_dict().items()}


def assert_loads_strict(name, state, **kwargs):
    net = pytorch_impl.create_model(name, **kwargs)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    loaded = net.state_dict()
    for k, v in without_counters(state.items()).items():
        assert np.array_equal(loaded[k].numpy(), v), k


def convert_chain(capsys, chain, model):
    """Run the CLI without ``--model`` along ``chain``; every step must identify ``model``."""
    for src, dst in zip(chain, chain[1:]):
        code = cli.main([str(src), str(dst)])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert f"model {model} " in out, out


def assert_bit_exact(back, original):
    assert back.keys() == original.keys()
    for k, v in original.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k


# --------------------------------------------------------------------------- UPANets tests
# main.py: UPANets(args.filters, classes, args.blocks, img_size): CIFAR-10/100 at 32, Tiny ImageNet at 64
UPANETS = [("upanets16", 16, 10, 32), ("upanets32", 32, 100, 32), ("upanets64", 64, 200, 64)]


@pytest.mark.parametrize("model, filters, classes, img", UPANETS)
def test_upanets_names_are_the_originals(model, filters, classes, img):
    original = upanets_original(filters, classes, 1, img)
    assert len(original) == len(dict(original))
    assert torch_shapes(model, num_classes=classes, img_size=img) == without_counters(original)


def test_upanets_original_state_dict_loads_strict():
    assert_loads_strict("upanets16", random_state(upanets_original(16, 10, 1, 32)), num_classes=10, img_size=32)


def test_upanets_main_checkpoint_converts_bit_exact(tmp_path, capsys):
    state = random_state(upanets_original(16, 10, 1, 32))
    # main.py's test(): {'net': net.state_dict(), 'acc': acc, 'epoch': epoch}, DataParallel on CUDA
    net = {f"module.{k}": torch.from_numpy(v) for k, v in state.items()}
    torch.save({"net": net, "acc": 93.5, "epoch": 41}, tmp_path / "ckpt.pth")
    chain = [tmp_path / "ckpt.pth", tmp_path / "a.pdparams", tmp_path / "b.params", tmp_path / "c.safetensors",
             tmp_path / "back.pth"]
    convert_chain(capsys, chain, "upanets16")
    back = {k: v.numpy() for k, v in torch.load(chain[-1], weights_only=True).items()}
    assert_bit_exact(back, without_counters(state.items()))


# --------------------------------------------------------------------------- SAN tests
@pytest.mark.parametrize("model, sa_type", [("san10_pairwise", 0), ("san10_patchwise", 1)])
def test_san_names_are_the_originals(model, sa_type):
    original = san_original(sa_type, **SAN10)
    assert len(original) == len(dict(original))
    assert torch_shapes(model) == without_counters(original)


def test_san_original_state_dict_loads_strict():
    assert_loads_strict("san10_pairwise", random_state(san_original(0, **SAN10)))


def test_san_training_checkpoint_converts_bit_exact(tmp_path, capsys):
    state = random_state(san_original(0, **SAN10))
    # tool/train.py: the model is wrapped in DistributedDataParallel, the optimizer is SGD
    # over model.parameters() (registration order) and the scheduler cosine
    params = [torch.nn.Parameter(torch.from_numpy(v)) for k, v in state.items()
              if not k.endswith((COUNTER, "running_mean", "running_var"))]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    scheduler.step()
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "top1_val": 12.5, "top5_val": 30.25}, tmp_path / "train_epoch_1.pth")
    chain = [tmp_path / "train_epoch_1.pth", tmp_path / "a.pdparams", tmp_path / "b.safetensors",
             tmp_path / "back.pth"]
    convert_chain(capsys, chain, "san10_pairwise")
    back = {k: v.numpy() for k, v in torch.load(chain[-1], weights_only=True).items()}
    assert_bit_exact(back, without_counters(state.items()))


# --------------------------------------------------------------------------- AlexNet tests
@pytest.mark.parametrize("model, simam", [("alexnet", False), ("alexnet_simam", True)])
def test_alexnet_paddle_names_are_the_seeds(model, simam):
    original = dict(alexnet_paddle_original(simam))
    with paddle.LazyGuard():
        net = paddle_impl.create_model(model)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == original


@pytest.mark.parametrize("model, simam", [("alexnet", False), ("alexnet_simam", True)])
def test_alexnet_paddle_checkpoint_converts_bit_exact(model, simam, tmp_path, capsys):
    state = random_state(alexnet_paddle_original(simam))
    # the seed: paddle.save(model.state_dict(), 'best_model.pdparams')
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(tmp_path / "best_model.pdparams"))
    chain = [tmp_path / "best_model.pdparams", tmp_path / "a.pth", tmp_path / "b.safetensors",
             tmp_path / "back.pdparams"]
    convert_chain(capsys, chain, model)
    torch_state = torch.load(chain[1], weights_only=True)
    assert np.array_equal(torch_state["classifier.0.weight"].numpy(), state["classifier.0.weight"].T)
    back = {k: np.asarray(v) for k, v in paddle.load(str(chain[-1]), return_numpy=True).items()}
    assert_bit_exact(back, state)
