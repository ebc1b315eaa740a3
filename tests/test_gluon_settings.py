"""The MXNet setting ``gluon_impl`` makes as MXNet loads (``MXNET_USE_OPERATOR_TUNING=0``, every
operator on the threads set): applied when the package comes first, overridable, and
without effect on any result, which is checked bit for bit in fresh processes (MXNet reads
the setting once, when it loads)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One hybridized UPANets16 training step (forward, backward, the recipe's SGD update) and an
# inference pass in float32; prints a digest of the logits, the loss, every gradient and
# every updated parameter.
STEP = """
import hashlib
import gluon_impl
import gluon_impl.torch_optim
import mxnet as mx
import numpy as np
from mxnet import autograd
gluon_impl.set_threads(2)
mx.random.seed(0)
net = gluon_impl.create_model("upanets16")
net.initialize(mx.init.Xavier())
net.hybridize(static_alloc=True)
rng = np.random.default_rng(0)
x = mx.nd.array(rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
y = mx.nd.array(rng.integers(0, 10, 8))
trainer = mx.gluon.Trainer(net.collect_params(), "torchsgd",
                           {"learning_rate": 0.1, "momentum": 0.9, "wd": 5e-4})
with autograd.record():
    logits = net(x)
    loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(logits, y).mean()
loss.backward()
digest = hashlib.sha256()
for a in [logits, loss] + [p.grad() for p in net.collect_params().values() if p.grad_req != "null"]:
    digest.update(a.asnumpy().tobytes())
trainer.step(1)
digest.update(net(x).asnumpy().tobytes())
for p in net.collect_params().values():
    digest.update(p.data().asnumpy().tobytes())
print(digest.hexdigest())
"""


def run(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "MXNET_USE_OPERATOR_TUNING"}
    environ.update(env, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_importing_gluon_impl_first_sets_operator_tuning_off_unless_set():
    show = "import os, gluon_impl; print(os.environ['MXNET_USE_OPERATOR_TUNING'])"
    assert run(show) == "0"
    assert run(show, MXNET_USE_OPERATOR_TUNING="1") == "1"


def test_operator_threads_change_no_result():
    with_setting, without = run(STEP), run(STEP, MXNET_USE_OPERATOR_TUNING="1")
    assert len(with_setting) == len(hashlib.sha256().hexdigest())
    assert with_setting == without
