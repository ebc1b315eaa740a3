"""Timing helpers of the benchmarks: interleaved runs and their medians.

Compared cases run in turn (every iteration times each once, in a rotating order), so a
burst of machine load slows all of them alike, and the median of 15+ iterations ignores the
iterations that a burst slowed 3-10 times. Each case must close its asynchronous work before
it returns (``mx.nd.waitall()``, ``.numpy()``, ``torch.cuda.synchronize()``).
"""
import statistics
import time


def interleaved(cases, iters, warmup):
    """Median seconds of each callable in ``cases`` ({name: fn}), timed in turn."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times = {name: [] for name in names}
    for i in range(iters):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
