"""Dense targets for cross entropy with label smoothing, in the two conventions the seed
recipes use. Both return N x K arrays; the loss is ``sum(-target * log_softmax(logits))``.

* :func:`smooth_one_hot`: the **Gluon recipe** (Residual Attention Network): one-hot with
  ``on = 1 - eps`` and ``off = eps / (K - 1)``; the rows still sum to 1.
* :func:`smooth_uniform`: the **Paddle recipe** (AlexNet-SimAM), written there as
  ``(1 - eps) * nll + eps * mean_k(-log p_k)``, which is the target
  ``(1 - eps) * one_hot + eps / K``; it is also torch's ``label_smoothing=eps``.

They differ: ``smooth_one_hot(eps)`` equals ``smooth_uniform(eps * K / (K - 1))``.
"""
import numpy as np


def one_hot(labels, num_classes, dtype=np.float32):
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    out = np.zeros((len(labels), num_classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


def smooth_one_hot(labels, num_classes, eps, dtype=np.float32):
    """Gluon recipe: on = 1 - eps, off = eps / (K - 1)."""
    hot = one_hot(labels, num_classes, dtype)
    return (hot * (1 - eps) + (1 - hot) * (eps / (num_classes - 1))).astype(dtype)


def smooth_uniform(labels, num_classes, eps, dtype=np.float32):
    """Paddle recipe / torch: (1 - eps) * one_hot + eps / K."""
    return (one_hot(labels, num_classes, dtype) * (1 - eps) + eps / num_classes).astype(dtype)


def soft_cross_entropy(logits, targets):
    """Mean over the batch of ``sum(-targets * log_softmax(logits))`` in numpy (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-(targets * log_p).sum(axis=1).mean())
