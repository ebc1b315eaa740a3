"""Timing helpers of the benchmarks: several frameworks in one process, interleaved runs
and their medians.

Compared cases run in turn (every iteration times each once, in a rotating order), so a
burst of machine load slows all of them alike, and the median of 15+ iterations ignores the
iterations that a burst slowed 3-10 times. Each case must close its asynchronous work before
it returns (``mx.nd.waitall()``, ``.numpy()``, ``torch.cuda.synchronize()``).

Frameworks in one process slow each other through their OpenMP runtimes; two settings give
each its speed alone (UPANets16 inference, batch 64, 2 threads, Intel Xeon, ms):

* :func:`one_process`: MXNet runs its operators on the calling thread (``NaiveEngine``).
  Its default engine runs them on a worker thread, whose OpenMP team is a second one in
  the libgomp that torch uses too (MXNet loads it first); with more of its threads than
  cores, libgomp stops spinning at its barriers, and every parallel region of either
  framework waits for sleeping threads. PyTorch: 113 alone, 155 once MXNet has run; Gluon:
  135 alone, 181 once torch has run anything (one addition of 1M numbers is enough). With
  ``NaiveEngine``, interleaved: 117 and 145; Gluon alone is as fast with it (139).
* a pause after each case (``settle``): Paddle's Intel OpenMP threads spin for 200 ms after
  each of its parallel regions (``KMP_BLOCKTIME``), on the cores the next case needs. Gluon
  right after Paddle: 214; after a 0.25 s pause: 145. Paddle itself, whose threads then
  start asleep: 386 against 355 alone.
"""
import os
import statistics
import time

SETTLE_S = 0.25  # above Intel OpenMP's default KMP_BLOCKTIME (200 ms)


def one_process(threads):
    """Set the environment for timing several frameworks side by side: ``threads`` OpenMP
    threads (MXNet and Paddle read ``OMP_NUM_THREADS`` at import; each framework's
    ``set_threads`` still runs after every import), MXNet's ``NaiveEngine``, and
    ``gluon_impl``'s settings of MXNet (it is imported here, before MXNet loads). Call it
    before any framework is imported."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MXNET_ENGINE_TYPE"] = "NaiveEngine"
    import gluon_impl  # noqa: F401


def interleaved(cases, iters, warmup, settle=SETTLE_S):
    """Median seconds of each callable in ``cases`` ({name: fn}), timed in turn, each run
    followed by a pause of ``settle`` seconds (0 where no framework runs)."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    time.sleep(settle)
    times = {name: [] for name in names}
    for i in range(iters):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
            time.sleep(settle)
    return {name: statistics.median(t) for name, t in times.items()}
