"""Seeded mini-batches: the same (seed, epoch) gives the same batches, bit for bit.

The order of an epoch comes from ``default_rng([seed, epoch])`` and the augmentation of the
image at place ``p`` of that order from ``default_rng([seed, epoch, p])``, so batches can be
built in parallel worker processes, a run resumed at epoch ``e`` sees exactly the batches it
would have seen, and a process that takes a share of every batch (a distributed run) augments
its images exactly as one process would.
Batches are numpy arrays (N x 3 x H x W float32 images, N int64 labels); the adapters in
each ``*_impl.data`` module turn them into that framework's tensors.

Worker processes (``workers`` > 0) are forked at the first epoch and serve the next ones;
they stop as soon as the consumer leaves an epoch early or an error stops it (the next epoch
forks new ones), when the loader is closed or garbage-collected, and when Python exits. Fork
shares the dataset (an in-memory uint8 array copy-on-write, or an
:class:`~common.data.ImageFolder`'s list of paths) and the transform (closures and lambdas
included: nothing of the loader is pickled) with every worker, as they were at the fork
(a loader whose dataset, transform, seed or batch size changed forks new workers). At the
start of an epoch each worker receives its order and places; then each task is one batch
index, and the worker sends back the batch's pixels as raw bytes through a pipe, with the
labels and the images it skipped. Batch ``b`` goes to worker ``b % workers``, each worker
keeps :data:`PREFETCH` batches queued, and the batches come out in order. Where ``fork``
does not exist (Windows) the batches are prepared in the main process.
"""
import io
import multiprocessing
import os
import pickle
import signal
import struct
import traceback
import weakref

import numpy as np

from .data import DatasetError

PREFETCH = 2  # batches queued per worker process


class BatchLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` transformed by ``transform``.

    ``shuffle`` draws a new order every epoch; ``drop_last`` drops a final short batch;
    ``workers`` processes prepare up to ``PREFETCH * workers`` batches ahead (0: the batches
    are prepared in the main process, when they are asked for); :meth:`close` stops them.

    An image the dataset cannot decode (a :class:`~common.data.DatasetError`) stops the
    epoch, unless ``skip_bad(message)`` is given: then it is called (in the main process,
    in the order of the batches), the image is left out of its batch (a batch left empty is
    not yielded), and :meth:`skipped` counts it. Any other error in a worker stops the epoch
    with that error, raised in the main process with the worker's traceback as a note.
    """

    def __init__(self, dataset, batch_size, transform, shuffle=False, drop_last=False,
                 seed=0, workers=2, skip_bad=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size, self.transform = dataset, batch_size, transform
        self.shuffle, self.drop_last, self.seed, self.workers = shuffle, drop_last, seed, workers
        self.skip_bad, self._skipped, self._pool = skip_bad, {}, None

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
        """Batch ``index`` of ``epoch`` as (images, labels), prepared in this process; None
        when every image of it was skipped."""
        order = self.order(epoch) if order is None else order
        places = self.places(epoch) if places is None else places
        return self._account(epoch, self._prepare(epoch, index, order, places))

    def _prepare(self, epoch, index, order, places):
        """((images, labels) or None, [(skipped index, message)]) of batch ``index``: what a
        worker computes, without side effects."""
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        images, kept, skipped = [], [], []
        for i, place in zip(order[part], places[part]):
            try:
                image = self.dataset.images[i]
            except DatasetError as e:
                if self.skip_bad is None:
                    raise
                skipped.append((int(i), f"skipped {e}"))
                continue
            images.append(self.transform(image, np.random.default_rng([self.seed, epoch, place])))
            kept.append(i)
        return (np.stack(images), self.dataset.labels[kept]) if images else None, skipped

    def _account(self, epoch, prepared):
        batch, skipped = prepared
        for i, message in skipped:
            self.skip_bad(message)
            self._skipped.setdefault(epoch, []).append(i)
        return batch

    def skipped(self, epoch):
        """How many images of ``epoch`` were skipped so far (in the batches yielded)."""
        return len(self._skipped.get(epoch, ()))

    def epoch(self, epoch):
        """Iterate over the batches of ``epoch``."""
        plan = self.order(epoch), self.places(epoch)
        if self.workers <= 0 or len(self) == 0 or \
                "fork" not in multiprocessing.get_all_start_methods():
            batches = (self.batch(epoch, b, *plan) for b in range(len(self)))
        else:
            batches = self._in_workers(epoch, plan)
        yield from (b for b in batches if b is not None)

    def _in_workers(self, epoch, plan):
        n = len(self)
        pool = self._pool_for_epoch()
        ahead, finished, pool.busy = PREFETCH * pool.count, False, True
        try:
            pool.plan(epoch, *plan)
            for b in range(min(n, ahead)):
                pool.submit(b)
            for b in range(n):
                if b + ahead < n:
                    pool.submit(b + ahead)
                yield self._account(epoch, pool.result(b))
            finished = True
        finally:
            pool.busy = False
            if pool is not self._pool:  # the pool of an epoch iterated beside another
                pool.close()
            elif not finished:  # left early or failed: stop the workers rather than wait for them
                self.close()

    def _pool_for_epoch(self):
        """The worker processes, forked at the first epoch and kept while they are of use:
        forked anew when the dataset, transform, seed, batch size, skip policy or worker
        count changed since (they hold the loader as it was then); an epoch iterated while
        another one runs gets workers of its own, stopped at its end."""
        state = (id(self.dataset), id(self.transform), self.seed, self.batch_size,
                 self.skip_bad is None, self.workers)
        if self._pool is not None and not self._pool.busy and self._pool.state != state:
            self.close()
        if self._pool is not None and self._pool.busy:
            return _Workers(self.workers, self._prepare, state)
        if self._pool is not None:
            return self._pool
        self._pool = _Workers(self.workers, self._prepare, state)
        self._finalizer = weakref.finalize(self, self._pool.close)
        return self._pool

    def close(self):
        """Stop the worker processes (they also stop when an epoch is left early or fails,
        when the loader is garbage-collected and when Python exits)."""
        if self._pool is not None:
            self._finalizer()
            self._pool = None

    def __iter__(self):
        return self.epoch(0)


class ShardLoader(BatchLoader):
    """Process ``rank``'s share of every batch of a :class:`BatchLoader` of ``global_batch``
    images run by ``world`` processes: global batch b holds the images it holds in one
    process, cut in ``world`` consecutive parts of ``global_batch / world``, and part
    ``rank`` is here. A short last batch (without ``drop_last``) fills the first parts, so
    every image is seen once; a process whose part of it is empty has one batch fewer. Each
    image is augmented as in one process (its random draws belong to its place)."""

    def __init__(self, dataset, global_batch, transform, rank=0, world=1, **kw):
        super().__init__(dataset, global_batch // world, transform, **kw)
        self.global_batch, self.rank, self.world = global_batch, rank, world

    def mine(self):
        """Which places of the one-process order of an epoch are this process's."""
        place = np.arange(len(self.dataset))
        mine = place % self.global_batch // self.batch_size == self.rank
        if self.drop_last:
            mine &= place < len(self.dataset) // self.global_batch * self.global_batch
        return mine

    def __len__(self):
        return -(-int(self.mine().sum()) // self.batch_size)

    def order(self, epoch):
        return super().order(epoch)[self.mine()]

    def places(self, epoch):
        return np.flatnonzero(self.mine())


class _Workers:
    """``count`` forked processes running ``work(epoch, index, order, places)`` for the
    latest plan sent (:meth:`plan`: epoch, order, places); task ``index`` goes to worker
    ``index % count``, whose results come back in the order of its tasks. Each worker has a
    task pipe and a result pipe: length-prefixed pickles (for a result, followed by the
    images' raw bytes); the end of the task pipe stops it."""

    def __init__(self, count, work, state=None):
        self.count, self.state, self.processes, self.busy = count, state, [], False
        pipes = [os.pipe() + os.pipe() for _ in range(count)]  # task r, w; result r, w
        self.tasks = [io.FileIO(p[1], "w") for p in pipes]
        self.results = [io.FileIO(p[2], "r") for p in pipes]
        try:
            context = multiprocessing.get_context("fork")
            for k, (task_r, task_w, result_r, result_w) in enumerate(pipes):
                inherited = [fd for p in pipes for fd in p if fd not in (task_r, result_w)]
                process = context.Process(target=_serve, args=(work, task_r, result_w, inherited),
                                          name=f"loader-worker-{k}", daemon=True)
                process.start()
                self.processes.append(process)
        except BaseException:
            self.close()
            raise
        finally:
            for task_r, _, _, result_w in pipes:
                os.close(task_r)
                os.close(result_w)

    def plan(self, *plan):
        """Send every worker the plan of an epoch (while they wait for it, idle: a big plan
        cannot fill a pipe that a busy worker does not read)."""
        for k in range(self.count):
            self._send(k, ("plan", *plan))

    def submit(self, index):
        """Queue task ``index`` of the plan."""
        self._send(index % self.count, index)

    def _send(self, k, task):
        message = pickle.dumps(task)
        try:
            _write(self.tasks[k], struct.pack("<Q", len(message)) + message)
        except BrokenPipeError:
            raise self._stopped(k) from None

    def result(self, index):
        k = index % self.count
        pipe = self.results[k]
        try:
            kind, header = _receive(pipe)
            if kind == "error":
                raise _rebuild(*header)
            batch, skipped = header
            if batch is not None:
                shape, dtype, labels = batch
                images = np.empty(shape, dtype)
                _read(pipe, images.nbytes, images.reshape(-1).view(np.uint8))
                batch = images, labels
        except EOFError:
            raise self._stopped(k) from None
        return batch, skipped

    def _stopped(self, k):
        process = self.processes[k]
        process.join(1)
        return RuntimeError(f"loader worker {k} (pid {process.pid}) stopped unexpectedly "
                            f"(exit code {process.exitcode})")

    def close(self):
        """Stop the workers by SIGTERM (the end of its task pipe would not reach a worker
        whose pipe a worker of another loader, forked later, holds too); SIGKILL when one is
        still there 5 seconds later."""
        for pipe in self.tasks:
            pipe.close()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self.results:
            pipe.close()


def _receive(pipe):
    """A length-prefixed pickle from ``pipe``."""
    size, = struct.unpack("<Q", _read(pipe, 8))
    return pickle.loads(_read(pipe, size))


def _read(pipe, size, into=None):
    """``size`` bytes from ``pipe`` (into the uint8 array ``into`` when given); EOFError when
    the writer is gone."""
    out = bytearray(size) if into is None else into
    view, done = memoryview(out), 0
    while done < size:
        got = pipe.readinto(view[done:])
        if not got:
            raise EOFError
        done += got
    return out


def _write(pipe, data):
    view = memoryview(data).cast("B")
    while view:
        view = view[pipe.write(view):]


def _serve(work, task_fd, result_fd, inherited):
    """A worker's loop: read a task, send back what ``work`` made of it, until the end of the
    task pipe (or a closed result pipe: the main process stopped listening)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in inherited:  # the other pipes' ends: the main process alone holds them
        os.close(fd)
    tasks, results = io.FileIO(task_fd, "r"), io.FileIO(result_fd, "w")
    try:
        while True:
            task = _receive(tasks)
            if isinstance(task, tuple):
                _, epoch, order, places = task
                continue
            images = None
            try:
                batch, skipped = work(epoch, task, order, places)
                if batch is not None:
                    images, labels = batch
                    images = np.ascontiguousarray(images)
                    batch = images.shape, images.dtype.str, labels
                message = pickle.dumps(("ok", (batch, skipped)))
            except Exception as e:
                message = pickle.dumps(("error", _describe(e)))
                images = None
            _write(results, struct.pack("<Q", len(message)) + message)
            if images is not None:
                _write(results, images)
    except (EOFError, BrokenPipeError):
        pass


def _describe(error):
    """What the main process needs to raise ``error`` again: the error pickled (when it can
    be), its type, its message and the worker's traceback."""
    try:
        pickled = pickle.dumps(error)
        pickle.loads(pickled)
    except Exception:
        pickled = None
    return pickled, type(error).__qualname__, str(error), traceback.format_exc()


def _rebuild(pickled, kind, message, trace):
    error = pickle.loads(pickled) if pickled is not None else RuntimeError(f"{kind}: {message}")
    error.add_note(f"raised in a loader worker process:\n{trace.rstrip()}")
    return error
