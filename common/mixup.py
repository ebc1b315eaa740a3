"""Mixup (Zhang et al., arXiv 1710.09412) as the Gluon recipe does it: each batch is mixed
with itself reversed, ``x = lam * x + (1 - lam) * x[::-1]``, and so are its dense targets."""
import numpy as np


class MixupSampler:
    """Draws lambda ~ Beta(alpha, alpha) for batch ``index`` of ``epoch`` from its own
    seeded stream, independent of the data order and augmentation."""

    def __init__(self, alpha, seed=0):
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be positive, got {alpha}")
        self.alpha, self.seed = alpha, seed

    def __call__(self, epoch, index):
        return float(np.random.default_rng([self.seed, epoch, index, 1]).beta(self.alpha, self.alpha))


def mixup(images, targets, lam):
    """Mix a batch with its reverse: images N x ... and dense targets N x K."""
    return (lam * images + (1 - lam) * images[::-1]).astype(images.dtype), \
        (lam * targets + (1 - lam) * targets[::-1]).astype(targets.dtype)
