"""What `RegularizationDriver` costs a training step, by number of objects.

Two models, each with one regularizer object per kernel and per bias:

- `48`: the benchmark MLP of `bench_regularizers.py` (24 Dense layers of 256
  units, batch 64): 48 objects;
- `500`: 250 Dense layers of 32 units, batch 64: 500 objects.

Three configurations of each, timed side by side (`_timing`):

- `constant`: `kr.ElasticNet(1e-5, 1e-4)` per kernel and bias;
- `scheduled`: `kr.ElasticNet(ramp, ramp)` per kernel and bias, with one
  `ramp` schedule object (a Linear ramp that changes at every step), driven
  by `RegularizationDriver(update_freq="batch")`;
- `scheduled, a schedule per object`: the same, but each object builds its
  own (equal) ramps, so each holds its own variables until the first `fit()`
  joins them (the warm-up fit here; `variables` counts them after the runs).

It reports median step times, paired ratios to `constant` with 95%
intervals, and, timed alone, the scheduler's host work per step (its
`on_train_batch_begin` and `on_train_batch_end`) and per `fit()` (its
`on_train_begin`).

    KERAS_BACKEND=jax python benchmarks/bench_scheduler.py [--size 48] [--reps 21] [--steps 100]
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr
from _timing import header
from _timing import median_seconds
from _timing import medians
from _timing import paired_ratio
from _timing import run_from_command_line
from _timing import time_fits_per_rep

BATCH = 64
SIZES = {48: (24, 256), 500: (250, 32)}  # objects: (Dense layers, units)


def build(layers, units, make_reg):
    """`layers` Dense layers; every kernel and bias gets its own `make_reg()`."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((units,))]
        + [
            keras.layers.Dense(units, activation="relu",
                               kernel_regularizer=make_reg(), bias_regularizer=make_reg())
            for _ in range(layers)
        ]
        + [keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model


def hook_cost(model, calls, rounds):
    """Seconds of host work per step, and per `fit()` start, of the scheduler."""
    scheduler = kr.callbacks.RegularizationDriver()
    scheduler.set_model(model)

    def fit_start():
        scheduler.on_train_begin()
        scheduler.on_train_end()

    per_fit = median_seconds(fit_start, rounds)
    # As fit() leaves it between steps: attached, mid-epoch.
    scheduler.on_train_begin()
    scheduler.on_epoch_begin(0)
    scheduler.on_train_batch_begin(0)
    logs, batch = {"loss": 0.0}, [0]

    def step():
        batch[0] += 1
        scheduler.on_train_batch_begin(batch[0])
        scheduler.on_train_batch_end(batch[0], logs)

    per_step = median_seconds(step, rounds, number=calls)
    scheduler.on_train_end()
    return per_step, per_fit


def main(size, reps, steps, calls=500):
    layers, units = SIZES[size]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, units)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")

    def ramp():  # changes at every step of the run
        return kr.schedules.Linear(0.0, 1e-4, end_step=10 * (reps + 1) * steps)

    one = ramp()
    makers = {
        "constant": lambda: kr.ElasticNet(1e-5, 1e-4),
        "scheduled": lambda: kr.ElasticNet(one, one),
        "scheduled, a schedule per object": lambda: kr.ElasticNet(ramp(), ramp()),
    }
    models = {name: build(layers, units, make) for name, make in makers.items()}
    callbacks = {name: [kr.callbacks.RegularizationDriver()] for name in makers
                 if name != "constant"}
    times = time_fits_per_rep(models, callbacks, x, y, BATCH, reps)
    hooks = {name: hook_cost(models[name], calls, rounds=5) for name in callbacks}
    result = {
        **header(reps, steps),
        "objects": size,
        "variables": {name: len(m.non_trainable_variables) for name, m in models.items()},
        "median_ms": {k: round(v * 1e3, 3) for k, v in medians(times).items()},
        "ratio_to_constant": {name: paired_ratio(times, name, "constant") for name in callbacks},
        "scheduler_us_per_step": {k: round(v[0] * 1e6, 1) for k, v in hooks.items()},
        "scheduler_ms_per_fit": {k: round(v[1] * 1e3, 2) for k, v in hooks.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=21, steps=100,
                          size={"type": int, "choices": sorted(SIZES), "default": 48})
