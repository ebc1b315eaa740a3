"""The Residual Attention Network takes the original Gluon code's names
(haoxintong/ResidualAttentionNetwork-Gluon), so the original's checkpoints load as they are.

:func:`original_names` writes out the ``save_parameters`` name -> shape list of the original,
read off its structure (``net/attention_block.py``: ``AttentionBlock`` with ``pre``,
``trunk_branch``, ``mask_branch``, ``post``; ``_MaskBlock`` whose levels k = stage..3 hold
``down_sample_k`` (max-pool), ``down_res_unit_k``, ``skip_connection_k`` (k < 3),
``up_res_unit_k``, ``up_sample_k`` (no parameters) and an ``output`` of BN-ReLU-conv twice and a
sigmoid; the model zoo's ``BottleneckV2`` with ``bn1, conv1, bn2, conv2, bn3, conv3`` and a
``downsample`` conv on projection units; ``net/attention_net.py``: ``features`` = stem, for
each stage a projection unit and its attention blocks, three head units, BN, ReLU, pool,
flatten; ``output`` = Dense). It is written from that reading, not from the project's model.
The CIFAR network (``get_attention_cifar``) keeps 32x32 in stage 1: a 3x3 conv of 32, BN,
ReLU, then the stages at 128/256/512 channels and a 1024-channel head.
"""
import numpy as np
import pytest

from common.checkpoint import load_gluon_params, save_gluon_params
from common.convert import upgrade_name
from gluon_impl import create_model as create_gluon
from scripts.convert import main

SPECS = {56: ((1, 2, 1), (1, 1, 1)), 92: ((1, 2, 1), (1, 2, 3))}  # paper Sec. 4.1


def batch_norm(prefix, channels):
    return [(f"{prefix}.{leaf}", (channels,)) for leaf in ("gamma", "beta", "running_mean", "running_var")]


def bottleneck_v2(prefix, channels, in_channels, downsample=False):
    """The model zoo's BottleneckV2(channels, stride, downsample, in_channels)."""
    mid = channels // 4
    names = (batch_norm(f"{prefix}.bn1", in_channels) + [(f"{prefix}.conv1.weight", (mid, in_channels, 1, 1))]
             + batch_norm(f"{prefix}.bn2", mid) + [(f"{prefix}.conv2.weight", (mid, mid, 3, 3))]
             + batch_norm(f"{prefix}.bn3", mid) + [(f"{prefix}.conv3.weight", (channels, mid, 1, 1))])
    if downsample:
        names.append((f"{prefix}.downsample.weight", (channels, in_channels, 1, 1)))
    return names


def attention_block(prefix, channels, stage, p, t, r):
    units = lambda name, count: [n for i in range(count)
                                 for n in bottleneck_v2(f"{prefix}.{name}.{i}", channels, channels)]
    names = units("pre", p) + units("trunk_branch", t)
    for k in (1, 2, 3):
        if stage <= k:
            names += units(f"mask_branch.down_res_unit_{k}", r)
            if k < 3:
                names += bottleneck_v2(f"{prefix}.mask_branch.skip_connection_{k}", channels, channels)
            names += units(f"mask_branch.up_res_unit_{k}", r)
    out = f"{prefix}.mask_branch.output"
    names += (batch_norm(f"{out}.0", channels) + [(f"{out}.2.weight", (channels, channels, 1, 1))]
              + batch_norm(f"{out}.3", channels) + [(f"{out}.5.weight", (channels, channels, 1, 1))])
    return names + units("post", p)


def original_names(depth, cifar, classes):
    (p, t, r), modules = SPECS[depth]
    if cifar:  # Conv2D(32, 3, 1, 1), BatchNorm, relu
        stem, widths, head, names, index = 32, (128, 256, 512), 1024, [("features.0.weight", (32, 3, 3, 3))], 3
    else:  # Conv2D(64, 7, 2, 3), BatchNorm, relu, MaxPool2D
        stem, widths, head, names, index = 64, (256, 512, 1024), 2048, [("features.0.weight", (64, 3, 7, 7))], 4
    names += batch_norm("features.1", stem)
    in_channels = stem
    for stage, (width, count) in enumerate(zip(widths, modules), start=1):
        names += bottleneck_v2(f"features.{index}", width, in_channels, downsample=True)
        index += 1
        for _ in range(count):
            names += attention_block(f"features.{index}", width, stage, p, t, r)
            index += 1
        in_channels = width
    names += bottleneck_v2(f"features.{index}", head, in_channels, downsample=True)
    names += bottleneck_v2(f"features.{index + 1}", head, head)
    names += bottleneck_v2(f"features.{index + 2}", head, head)
    names += batch_norm(f"features.{index + 3}", head)
    return names + [("output.weight", (classes, head)), ("output.bias", (classes,))]


CASES = [("attention56_cifar", 56, True, 10), ("attention92", 92, False, 1000)]


@pytest.mark.parametrize("name, depth, cifar, classes", CASES, ids=[c[0] for c in CASES])
def test_gluon_names_and_shapes_are_the_originals(name, depth, cifar, classes):
    expected = original_names(depth, cifar, classes)
    assert len(expected) == len(dict(expected)) == {56: 540, 92: 885}[depth]
    net = create_gluon(name, num_classes=classes)
    assert [(k, tuple(p.shape)) for k, p in net._collect_params_with_prefix().items()] == expected


def _original_file(path, depth, cifar, classes, seed=0):
    rng = np.random.default_rng(seed)
    state = {k: rng.standard_normal(shape, dtype=np.float32) for k, shape in original_names(depth, cifar, classes)}
    save_gluon_params(state, path)
    return state


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name, depth, cifar, classes", CASES, ids=[c[0] for c in CASES])
def test_an_original_params_file_loads_and_converts_bit_exact(name, depth, cifar, classes, tmp_path, capsys):
    """``load_parameters`` takes the original's file as it is; the CLI identifies the model
    without ``--model`` and carries every tensor to Paddle, PyTorch, safetensors, Paddle again
    and back to Gluon unchanged."""
    src = tmp_path / "original.params"
    state = _original_file(src, depth, cifar, classes)
    net = create_gluon(name, num_classes=classes)
    net.load_parameters(str(src))  # strict: no name missing, none left over
    assert np.array_equal(net.output.weight.data().asnumpy(), state["output.weight"])
    chain = [src, tmp_path / "a.pdparams", tmp_path / "b.pth", tmp_path / "c.safetensors",
             tmp_path / "d.pdparams", tmp_path / "back.params"]
    for a, b in zip(chain, chain[1:]):
        code, out, err = _run(capsys, a, b)
        assert code == 0, err
        assert f"model {name} " in out  # identified from the tensors alone
    back = load_gluon_params(tmp_path / "back.params")
    assert back.keys() == state.keys()
    assert all(np.array_equal(back[k], v) for k, v in state.items())


def test_older_project_names_upgrade_by_one_rule():
    """This project's names before 0.2 map onto the original's; other names are untouched."""
    cases = {
        "features.4.trunk.1.conv2.weight": "features.4.trunk_branch.1.conv2.weight",
        "features.4.mask.down_units_1.0.bn1.gamma": "features.4.mask_branch.down_res_unit_1.0.bn1.gamma",
        "features.12.mask.skip_2.downsample.weight": "features.12.mask_branch.skip_connection_2.downsample.weight",
        "features.6.mask.up_units_3.0.bn3.running_var": "features.6.mask_branch.up_res_unit_3.0.bn3.running_var",
        "features.6.mask.output.3._variance": "features.6.mask_branch.output.3._variance",
        "features.4.pre.0.bn1.weight": "features.4.pre.0.bn1.weight",
        "features.0.weight": "features.0.weight",  # AlexNet
        "layer1.0.mask.weight": "layer1.0.mask.weight",  # not under features.N
    }
    assert {old: upgrade_name(old) for old in cases} == cases


def _older_names(name):
    """Rename the original's names back to this project's names before 0.2."""
    for new, old in ((".trunk_branch.", ".trunk."), (".mask_branch.", ".mask."),
                     ("down_res_unit_", "down_units_"), ("skip_connection_", "skip_"),
                     ("up_res_unit_", "up_units_")):
        name = name.replace(new, old)
    return name


def test_an_older_project_checkpoint_still_converts(tmp_path, capsys):
    state = _original_file(tmp_path / "o.params", 56, True, 10)
    old = {_older_names(k): v for k, v in state.items()}
    assert len(set(old) - set(state)) == 345  # every trunk and mask-branch name differs
    save_gluon_params(old, tmp_path / "old.params")
    code, out, err = _run(capsys, tmp_path / "old.params", tmp_path / "new.pth")
    assert code == 0, err
    assert "model attention56_cifar " in out
    code, out, err = _run(capsys, tmp_path / "new.pth", tmp_path / "new.params")
    assert code == 0, err
    back = load_gluon_params(tmp_path / "new.params")
    assert back.keys() == state.keys() and all(np.array_equal(back[k], v) for k, v in state.items())
