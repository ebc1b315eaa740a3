"""The real case: the native Gluon script trains Attention-56 (CIFAR) on the real CIFAR-10
subset for one short epoch (the session's ``attention56_cifar_gluon_run``, shared with the
Paddle port's test); its ``model-best.params``, converted through common/convert.py, gives the
PyTorch port the same prediction on every one of the 509 test images (normalised as the recipe
tests them), the same accuracy, and logits as close to the native float64 ones as float32
allows (``assert_float32_roundoff``: on this checkpoint, whose logits reach 1.6e4, Gluon's own
float32 logits are 0.7 to 1.1 float32 tolerances off its float64 ones, so two float32 runs are
not compared elementwise, as in ``test_alexnet.assert_float32_port_matches``)."""
import numpy as np
import torch

from common.checkpoint import load_gluon_params
from common.convert import match_state
from common.formats import convert_state
from parity_tests.tolerances import assert_float32_roundoff, assert_same_argmax
from pytorch_impl import create_model as create_torch


def test_gluon_trained_checkpoint_same_predictions_in_pytorch(attention56_cifar_gluon_run):
    checkpoint, images, gluon_logits, exact, labels = attention56_cifar_gluon_run
    model = create_torch("attention56_cifar", num_classes=10)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = convert_state(load_gluon_params(checkpoint), "gluon", "pytorch", shapes)
    match_state(state, shapes, what=str(checkpoint))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    model.eval()
    with torch.no_grad():
        torch_logits = np.concatenate([model(torch.from_numpy(images[i:i + 128])).numpy()
                                       for i in range(0, len(images), 128)])
    assert len(labels) == 509
    assert_same_argmax(torch_logits, gluon_logits, "509 CIFAR-10 test predictions")
    assert (torch_logits.argmax(1) == labels).mean() == (gluon_logits.argmax(1) == labels).mean()
    assert_float32_roundoff(torch_logits, gluon_logits, exact, "509 CIFAR-10 test logits")
