"""Step time of `ScheduledWeightDecay` against Keras' own float weight decay.

The benchmark MLP of `bench_regularizers.py` (24 Dense layers of 256 units,
batch 64, no regularizers), trained with Adam and decoupled weight decay:

- `keras AdamW`: `keras.optimizers.AdamW(1e-3, weight_decay=0.004)`;
- `keras AdamW (control)`: the same, a second model (the run's noise);
- `kr float`: `ScheduledWeightDecay(Adam(1e-3), 0.004)`;
- `kr cosine`: `ScheduledWeightDecay(Adam(1e-3), Cosine(0.04, 0.4))`, the
  value computed in the compiled update at every step.

Median step times and paired ratios to `keras AdamW` with 95% intervals
(`_timing`).

    KERAS_BACKEND=torch python benchmarks/bench_weight_decay.py [--reps 9] [--steps 30]
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr
from _timing import header
from _timing import milliseconds
from _timing import paired_ratios
from _timing import run_from_command_line
from _timing import time_fits_per_rep
from bench_regularizers import BATCH
from bench_regularizers import LAYERS
from bench_regularizers import UNITS

REFERENCE = "keras AdamW"


def build(make_optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((UNITS,))]
        + [keras.layers.Dense(UNITS, activation="relu") for _ in range(LAYERS)]
        + [keras.layers.Dense(1)]
    )
    model.compile(make_optimizer(), "mse")
    return model


def main(reps, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")
    total = (reps + 1) * steps
    configs = {
        REFERENCE: lambda: keras.optimizers.AdamW(1e-3, weight_decay=0.004),
        "keras AdamW (control)": lambda: keras.optimizers.AdamW(1e-3, weight_decay=0.004),
        "kr float": lambda: kr.optimizers.ScheduledWeightDecay(keras.optimizers.Adam(1e-3), 0.004),
        "kr cosine": lambda: kr.optimizers.ScheduledWeightDecay(
            keras.optimizers.Adam(1e-3), kr.schedules.Cosine(0.04, 0.4, end_step=total)),
    }
    models = {name: build(make) for name, make in configs.items()}
    times = time_fits_per_rep(models, {}, x, y, BATCH, reps)
    result = {
        **header(reps, steps),
        "median_ms": milliseconds(times),
        "ratio_to_keras": paired_ratios(times, REFERENCE),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=9, steps=30)
