"""Cost of a schedule against its size: host evaluation and a training step.

A `.keras` file can carry a schedule of any size past `safe_mode`, so the
work a schedule adds per step must stay bounded. This times, for
`PiecewiseConstant` with n boundaries and `Join` of n parts (n up to the
limit `Join` accepts): its host evaluation (`value_at`, what the scheduler
does each step; median of 20 timings of 100 calls, `_timing.median_seconds`)
and the median step of a tiny model (a Dense(1) on 8 inputs, batch 4) whose
L2 strength follows it, in `fit()` with `RegularizationDriver` (the
in-graph evaluation, compiled once; `_timing.time_fits_per_rep`).

    KERAS_BACKEND=jax python benchmarks/bench_schedule_size.py [--sizes 10 1000 1000000] [--reps 5] [--steps 20]
"""

import itertools
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr
from _timing import header
from _timing import median_seconds
from _timing import medians
from _timing import run_from_command_line
from _timing import time_fits_per_rep
from _timing import timed

BATCH = 4


def piecewise(n):
    return kr.schedules.PiecewiseConstant(list(range(1, n + 1)), [1e-3] * (n + 1))


def join(n):
    parts = [kr.schedules.Constant(1e-3) for _ in range(n)]
    return kr.schedules.Join(parts, list(range(1, n)))


def host_seconds(schedule, calls=20, number=100):
    step = itertools.count()
    return median_seconds(lambda: schedule.value_at(next(step)), calls, number)


def step_seconds(schedule, reps, steps):
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(1, kernel_regularizer=kr.L2(schedule))])
    model.compile("sgd", "mse")
    x, y = np.ones((steps * BATCH, 8), "float32"), np.ones((steps * BATCH, 1), "float32")
    callbacks = {"model": [kr.callbacks.RegularizationDriver()]}
    times = time_fits_per_rep({"model": model}, callbacks, x, y, BATCH, reps)
    return medians(times)["model"]


def main(reps, steps, sizes):
    rows = []
    for name, make, limit in (("PiecewiseConstant", piecewise, None), ("Join", join, 1000)):
        for n in sizes:
            if limit is not None and n > limit:
                continue
            schedule, build = timed(lambda: make(n))
            rows.append({
                "schedule": name,
                "n": n,
                "build_s": round(build, 3),
                "value_at_us": round(host_seconds(schedule) * 1e6, 2),
                "step_ms": round(step_seconds(schedule, reps, steps) * 1e3, 3),
            })
    result = {**header(reps, steps), "sizes": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=5, steps=20,
                          sizes={"type": int, "nargs": "+", "default": [10, 1000, 1_000_000]})
