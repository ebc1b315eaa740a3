"""Where and in what precision the Gluon train scripts run (gluon_impl/session.py's Placement):

* ``--ctx cpu0,cpu1`` splits every batch across two contexts (the path of ``gpu0,gpu1``):
  one SAN step is compared with the mean of the per-part gradients computed here, since
  each context's BatchNorm normalises its own part (so no one-context run is the same);
  the running statistics are the mean of the parts'. Each part goes through the script's
  hybridized step: with 2 images per BatchNorm this reduced SAN amplifies the round-off
  between a graph and imperative operators to 4% of a gradient;
* ``--amp`` on the CPU is refused in one line: MXNet 1.9.1 has no float16 CPU kernels
  ('FP16 gemm on cpu not implemented!'), and oneDNN's bfloat16 needs AVX-512;
* the ``--amp`` path itself (the network in float16, ``multi_precision`` float32 master
  weights in the project's ``torchsgd``, float32 checkpoints, exact resume) on a model of
  elementwise operations, which this CPU runs in float16;
* bad ``--ctx`` values and batches that the contexts cannot share end in one line.
"""
import types

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from common.checkpoint import load_gluon_params
from common.labels import smooth_uniform
from common.processes import Processes
from common.san_recipe import build_loaders, parse_args
from gluon_impl import create_model, train_alexnet, train_attention, train_san, train_upanets
from gluon_impl.layers import BatchNorm, TorchRunningVariance
from gluon_impl.session import context_names, soft_cross_entropy
from gluon_impl.weights import load_weights
from parity_tests.tolerances import AMP_LOSS_RTOL, assert_close

SAN = ["--layers", "1", "1", "1", "1", "1", "--batch-size", "4", "--max-batches", "1",
       "--workers", "0", "--log-interval", "0", "--threads", "1"]
SCRIPTS = {"attention": train_attention, "alexnet": train_alexnet, "upanets": train_upanets,
           "san": train_san}


def test_two_contexts_step_with_the_mean_of_the_parts_gradients(tmp_path):
    kwargs = dict(num_classes=10, layers=(1,) * 5, kernels=(3, 3, 3, 3, 1))
    mx.random.seed(5)
    init = train_san.initialized_model("san10_pairwise", **kwargs)
    init.save_parameters(str(tmp_path / "init.params"))
    lr, wd = 0.05, 1e-4
    train_san.main([*SAN, "--ctx", "cpu0,cpu1", "--lr", str(lr), "--initial-checkpoint",
                    str(tmp_path / "init.params"), "--log-dir", str(tmp_path / "run")])
    images, labels = next(iter(build_loaders(parse_args("", SAN), Processes())[2].epoch(0)))
    targets = smooth_uniform(labels, 10, 0.1)
    start = load_gluon_params(tmp_path / "init.params")
    grads, stats = [], []
    for part in (slice(0, 2), slice(2, 4)):  # each context's half of the batch, alone
        model = load_weights(create_model("san10_pairwise", **kwargs), start)
        x = mx.nd.array(images[part])
        running_variance = TorchRunningVariance(model)  # the script's hybridized step
        running_variance.measure(x[:1])
        model.hybridize(static_alloc=True)
        params = model._collect_params_with_prefix()
        with running_variance.step([len(x)]):
            with autograd.record():
                loss = soft_cross_entropy(model(x), mx.nd.array(targets[part]),
                                          reduction="none").sum()
            loss.backward()
        grads.append({k: p.grad().asnumpy() for k, p in params.items() if p.grad_req != "null"})
        stats.append({k: p.data().asnumpy() for k, p in params.items() if p.grad_req == "null"})
    saved = load_gluon_params(tmp_path / "run" / "model-last.params")
    assert set(saved) == set(start) and len(grads[0]) > 50 and len(stats[0]) > 20
    for k, g in grads[0].items():  # torch's SGD, first step: w - lr * (mean gradient + wd * w)
        expected = start[k] - lr * ((g + grads[1][k]) / len(labels) + wd * start[k])
        assert_close(saved[k], expected, np.float32, k)
    for k, s in stats[0].items():
        assert_close(saved[k], (s + stats[1][k]) / 2, np.float32, k)


@pytest.mark.parametrize("family", sorted(SCRIPTS))
def test_amp_on_the_cpu_is_one_line(family, tmp_path, capsys):
    flags = ["--amp"] if family != "attention" else ["--float16"]  # the original's spelling
    with pytest.raises(SystemExit) as exit_:
        SCRIPTS[family].main([*flags, "--log-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: --amp needs a GPU: MXNet 1.9.1 has no float16 kernels on the CPU")
    assert not (tmp_path / "run").exists()


def test_context_flags_fail_clearly(tmp_path, capsys):
    assert [context_names(t) for t in ("cpu", "CPU0, cpu1", "cpu3")] == ["cpu", "cpu0,cpu1", "cpu3"]
    for value, message in (("gpu0", "gpu0: this MXNet sees 0 GPU(s), no gpu0"),
                           ("0,1", "0,1: this MXNet sees 0 GPU(s), no gpu0"),  # the original's ids
                           ("tpu0", "must be 'cpu', 'gpu0,gpu1,...'"),
                           ("cpu0,gpu0", "cpu0,gpu0: give distinct devices of one kind"),
                           ("cpu0,cpu0", "cpu0,cpu0: give distinct devices of one kind")):
        with pytest.raises(SystemExit) as exit_:
            train_upanets.main(["--ctx", value, "--log-dir", str(tmp_path / "run")])
        assert exit_.value.code == 2 and f"argument --ctx: {message}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        train_alexnet.main(["--ctx", "cpu0,cpu1", "--batch-size", "5", "--log-dir", str(tmp_path / "run")])
    assert exit_.value.code == 2 and capsys.readouterr().err == (
        "error: --batch-size 5 must be a multiple of the 2 contexts of --ctx cpu(0),cpu(1)\n")
    assert not (tmp_path / "run").exists()


class Elementwise(gluon.HybridBlock):
    """A classifier without matrix products (MXNet's CPU has no float16 gemm): per-channel
    scale, the custom BatchNorm, global mean, and a channel-to-class map by broadcasting."""

    def __init__(self, classes=10):
        super().__init__()
        with self.name_scope():
            self.scale = self.params.get("scale", shape=(1, 3, 1, 1), init=mx.init.Uniform(1))
            self.head = self.params.get("head", shape=(1, 3, classes), init=mx.init.Uniform(1))
            self.bn = BatchNorm(3, unbiased_var=True)

    def hybrid_forward(self, F, x, scale, head):
        pooled = F.mean(self.bn(F.broadcast_mul(x, scale)), axis=(2, 3))
        return F.sum(F.broadcast_mul(F.expand_dims(pooled, 2), head), axis=1)


def elementwise_session(amp):
    """train_upanets' session (torch's SGD rule) over :class:`Elementwise` on two CPU
    contexts, float16 with ``amp`` (the GPU path of ``--amp``, as the CPU cannot run it for
    the real networks)."""
    mx.random.seed(1)
    model = Elementwise()
    model.initialize()
    args = types.SimpleNamespace(ctx="cpu0,cpu1", amp=amp, kvstore="device", lr=0.1, wd=5e-4)
    return train_upanets.Session(model, args)


def test_amp_path_keeps_float32_master_weights_and_resumes_exactly(tmp_path):
    images = np.random.default_rng(0).normal(size=(4, 3, 8, 8)).astype(np.float32)
    labels = np.array([1, 7, 3, 7])

    def step(session, lr):
        return session.train_batch(images, labels, lr, 0, 0)

    fp32, amp = elementwise_session(False), elementwise_session(True)
    dtypes = {k: np.dtype(p.dtype).name for k, p in amp.parameters().items()}
    assert (dtypes["scale"], dtypes["bn.gamma"]) == ("float16", "float32")  # as Gluon casts BN
    losses = [(step(fp32, 0.1)[0], step(amp, 0.1)[0]) for _ in range(2)]
    assert abs(losses[0][1] - losses[0][0]) <= AMP_LOSS_RTOL * losses[0][0] and np.isfinite(losses).all()
    assert losses[0][1] != losses[0][0]  # the forward ran in float16
    assert np.isfinite(amp.eval_batch(images, labels)[0])  # as fit: evaluate, then save
    amp.save_weights(tmp_path / "w.params")
    amp.save_optimizer(tmp_path / "o.params")
    saved = load_gluon_params(tmp_path / "w.params")
    assert {v.dtype for v in saved.values()} == {np.dtype(np.float32)}
    masters = amp.float32_masters()
    assert set(masters) == {"scale", "head"}
    for k, master in masters.items():  # the checkpoint holds the master copy, not float16's
        assert np.array_equal(saved[k], master.asnumpy()) and not np.array_equal(
            saved[k], saved[k].astype(np.float16).astype(np.float32))
        assert np.array_equal(amp.parameters()[k].data().asnumpy(), saved[k].astype(np.float16))
    # one momentum buffer per parameter with a gradient, no master copy (no "scale.1")
    assert set(load_gluon_params(tmp_path / "o.params")) == {"scale", "head", "bn.gamma", "bn.beta"}
    resumed = elementwise_session(True)
    resumed.load_weights(tmp_path / "w.params")
    resumed.load_optimizer(tmp_path / "o.params")
    assert step(resumed, 0.05)[0] == step(amp, 0.05)[0]
    for k, p in amp.parameters().items():
        assert np.array_equal(resumed.parameters()[k].data().asnumpy(), p.data().asnumpy()), k
