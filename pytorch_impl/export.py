"""ONNX export of the PyTorch models, and running an exported file with onnxruntime.

The exporter is torch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``):
torch's default dynamo exporter needs ``onnxscript``, which this project does not install.
The graph has one input ``images`` (N x 3 x S x S, float32) and one output ``logits``
(N x classes), with the batch dimension N symbolic: the file runs on any batch size. The
spatial size S is fixed by the export (the Residual Attention mask branch's resize matrices
and SAN's position grid are constants of that size).

Default opset: 16. From opset 17 the exporter writes ``layer_norm`` (UPANets) as ONNX
``LayerNormalization``, whose onnxruntime CPU kernel takes the variance as
``E[x^2] - E[x]^2`` in float32: measured on upanets64 (random weights), its logits are 4.5
float32 parity tolerances off the float64 result, against 0.26 for opset 16, where the layer
norm is written as its reductions (torch's own float32: 0.14).

SAN's operators export through their ``F.unfold`` form (:func:`pytorch_impl.san_ops.export_mode`).
"""
import warnings

import numpy as np
import torch

from common.checkpoint import atomic_path

from .san_ops import export_mode

DEFAULT_OPSET = 16
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def export_onnx(model, path, input_size, opset=DEFAULT_OPSET):
    """Write ``model`` (in eval mode) to ``path`` as ONNX with opset ``opset``, traced on one
    ``input_size`` x ``input_size`` image, with a symbolic batch axis; the file appears only
    complete (written beside ``path``, then renamed over it)."""
    parameter = next(model.parameters())
    example = torch.zeros(1, 3, input_size, input_size, dtype=parameter.dtype, device=parameter.device)
    with warnings.catch_warnings(), export_mode(), torch.no_grad(), atomic_path(path) as tmp:
        # the TorchScript exporter announces its own deprecation on every call; the tracer
        # warns where Python reads a tensor's shape (the spatial sizes, fixed by design: the
        # batch axis stays symbolic, which tests/test_export.py checks on another batch size);
        # and the exporter notes that it does not constant-fold strided slices
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})


def run_onnx(path, images):
    """Logits of the ONNX file ``path`` on the N x 3 x S x S float32 array ``images``, with
    onnxruntime on the CPU."""
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]
