"""Seeded mini-batches: the same (seed, epoch) gives the same batches, bit for bit.

The order of an epoch comes from ``default_rng([seed, epoch])`` and the augmentation of the
image at place ``p`` of that order from ``default_rng([seed, epoch, p])``, so batches can be
built in parallel threads, a run resumed at epoch ``e`` sees exactly the batches it would
have seen, and a process that takes a share of every batch (a distributed run) augments its
images exactly as one process would.
Batches are numpy arrays (N x 3 x H x W float32 images, N int64 labels); the adapters in
each ``*_impl.data`` module turn them into that framework's tensors.
"""
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .data import DatasetError


class BatchLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` transformed by ``transform``.

    ``shuffle`` draws a new order every epoch; ``drop_last`` drops a final short batch;
    ``workers`` threads prepare up to ``2 * workers`` batches ahead.

    An image the dataset cannot decode (a :class:`~common.data.DatasetError`) stops the
    epoch, unless ``skip_bad(message)`` is given: then it is called, the image is left out
    of its batch (a batch left empty is not yielded), and :meth:`skipped` counts it.
    """

    def __init__(self, dataset, batch_size, transform, shuffle=False, drop_last=False,
                 seed=0, workers=2, skip_bad=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size, self.transform = dataset, batch_size, transform
        self.shuffle, self.drop_last, self.seed, self.workers = shuffle, drop_last, seed, workers
        self.skip_bad, self._skipped = skip_bad, {}

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch):
        n = len(self.dataset)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle \
            else np.arange(n)

    def places(self, epoch):
        """The place of each image of :meth:`order` in the epoch's one-process order."""
        return np.arange(len(self.dataset))

    def batch(self, epoch, index, order=None, places=None):
        """Batch ``index`` of ``epoch`` as (images, labels)."""
        order = self.order(epoch) if order is None else order
        places = self.places(epoch) if places is None else places
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        images, kept = [], []
        for i, place in zip(order[part], places[part]):
            try:
                image = self.dataset.images[i]
            except DatasetError as e:
                if self.skip_bad is None:
                    raise
                self.skip_bad(f"skipped {e}")
                self._skipped.setdefault(epoch, []).append(i)  # list.append: thread-safe
                continue
            images.append(self.transform(image, np.random.default_rng([self.seed, epoch, place])))
            kept.append(i)
        if not images:
            return None
        return np.stack(images), self.dataset.labels[kept]

    def skipped(self, epoch):
        """How many images of ``epoch`` were skipped so far."""
        return len(self._skipped.get(epoch, ()))

    def epoch(self, epoch):
        """Iterate over the batches of ``epoch``."""
        plan = self.order(epoch), self.places(epoch)
        if self.workers <= 0:
            batches = (self.batch(epoch, b, *plan) for b in range(len(self)))
        else:
            batches = self._threaded(epoch, plan)
        yield from (b for b in batches if b is not None)

    def _threaded(self, epoch, plan):
        with ThreadPoolExecutor(self.workers) as pool:
            pending = deque()
            for b in range(len(self)):
                pending.append(pool.submit(self.batch, epoch, b, *plan))
                if len(pending) > 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def __iter__(self):
        return self.epoch(0)
