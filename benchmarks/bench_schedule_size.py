"""Cost of a schedule against its size: host evaluation and a training step.

A `.keras` file can carry a schedule of any size past `safe_mode`, so the
work a schedule adds per step must stay bounded. This times, for
`PiecewiseConstant` with n boundaries and `Join` of n parts (n up to the
limit `Join` accepts): its host evaluation (`value_at`, what the scheduler
does each step; median of many calls) and the median step of a tiny model
whose L2 strength follows it, in `fit()` with `RegularizationScheduler` (the
in-graph evaluation, compiled once).

    KERAS_BACKEND=jax python benchmarks/bench_schedule_size.py [--sizes 10 1000 1000000]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr
from _timing import machine

STEPS = 20  # batches per timed epoch


def piecewise(n):
    return kr.schedules.PiecewiseConstant(list(range(1, n + 1)), [1e-3] * (n + 1))


def join(n):
    parts = [kr.schedules.Constant(1e-3) for _ in range(n)]
    return kr.schedules.Join(parts, list(range(1, n)))


def host_seconds(schedule, calls=2000):
    start = time.perf_counter()
    for step in range(calls):
        schedule.value_at(step)
    return (time.perf_counter() - start) / calls


def step_seconds(schedule, reps=5):
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(1, kernel_regularizer=kr.L2(schedule))])
    model.compile("sgd", "mse")
    x, y = np.ones((STEPS * 4, 8), "float32"), np.ones((STEPS * 4, 1), "float32")
    fit = dict(batch_size=4, verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])
    model.fit(x, y, **fit)  # compiles
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        model.fit(x, y, **fit)
        times.append((time.perf_counter() - start) / STEPS)
    return statistics.median(times)


def main(sizes):
    print(f"backend {keras.backend.backend()}, {machine()}")
    print(f"{'schedule':<20}{'n':>9}{'build (s)':>11}{'value_at (us)':>15}{'fit step (ms)':>15}")
    for name, make, limit in (("PiecewiseConstant", piecewise, None), ("Join", join, 1000)):
        for n in sizes:
            if limit is not None and n > limit:
                continue
            start = time.perf_counter()
            schedule = make(n)
            build = time.perf_counter() - start
            print(f"{name:<20}{n:>9}{build:>11.3f}{host_seconds(schedule) * 1e6:>15.1f}"
                  f"{step_seconds(schedule) * 1e3:>15.2f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000, 1_000_000])
    main(parser.parse_args().sizes)
