"""Host cost of RegularizationScheduler's per-step work, timed alone.

The side-by-side step times of `bench_regularizers.py` cannot resolve a 3%
difference on a noisy machine, so this times the scheduler's own work per
training step directly: its `on_train_batch_begin` (evaluate every schedule
on the host, write the changed values; on JAX into the state the next step
receives) and `on_train_batch_end` (copy the values into `logs`), on the
benchmark MLP with a scheduled ElasticNet whose two strengths change at every
step. It reports the median over rounds of the mean cost per step, and that
as a share of the median step time of the same model in `fit()`.

    KERAS_BACKEND=jax python benchmarks/bench_scheduler.py [--reps 9] [--steps 30] [--calls 2000]
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import keras_regx as kr
from _timing import header
from _timing import time_fits
from bench_regularizers import BATCH
from bench_regularizers import UNITS
from bench_regularizers import build


def main(reps, steps, calls):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")
    ramp = kr.schedules.Linear(0.0, 1e-4, end_step=10 * calls)
    model = build(lambda: kr.ElasticNet(ramp, ramp))
    scheduler = kr.callbacks.RegularizationScheduler()
    step = time_fits({"scheduled": model}, {"scheduled": [scheduler]}, x, y, BATCH, reps)
    step = step["scheduled"]

    # The scheduler as fit() leaves it between steps: attached, mid-epoch.
    scheduler.set_model(model)
    scheduler.on_train_begin()
    scheduler.on_epoch_begin(0)
    scheduler.on_train_batch_begin(0)
    logs = {"loss": 0.0}
    rounds = []
    for r in range(reps):
        start = time.perf_counter()
        for b in range(1, calls + 1):
            scheduler.on_train_batch_begin(r * calls + b)
            scheduler.on_train_batch_end(r * calls + b, logs)
        rounds.append((time.perf_counter() - start) / calls)
    scheduler.on_train_end()
    per_step = statistics.median(rounds)
    result = {
        **header(reps, steps),
        "scheduled_values": len(logs) - 1,
        "step_ms": round(step * 1e3, 3),
        "scheduler_us_per_step": round(per_step * 1e6, 2),
        "share_of_step": round(per_step / step, 5),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    main(args.reps, args.steps, args.calls)
