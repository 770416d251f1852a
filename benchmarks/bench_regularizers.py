"""Step-time cost of keras_regx regularizers against Keras' own, side by side.

For the backend in KERAS_BACKEND, builds the same 24-layer MLP (256 units,
batch 64, kernel and bias regularized) with each configuration, then times
`fit()` over the same batches in interleaved repetitions (the configurations
in a new random order each round) and reports medians and ratios.

    KERAS_BACKEND=torch python benchmarks/bench_regularizers.py [--reps 7] [--steps 30]
    python benchmarks/run_all.py   # every backend, results into RESULTS.md
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr
from _timing import header
from _timing import time_fits

LAYERS, UNITS, BATCH = 24, 256, 64


def configurations(total_steps):
    ramp = kr.schedules.Linear(0.0, 1e-4, end_step=total_steps)
    return {
        "none": lambda: None,
        "keras L2": lambda: keras.regularizers.L2(1e-4),
        "kr L2": lambda: kr.L2(1e-4),
        "kr L2 scheduled": lambda: kr.L2(ramp),
        "keras L1L2": lambda: keras.regularizers.L1L2(1e-5, 1e-4),
        "kr ElasticNet": lambda: kr.ElasticNet(1e-5, 1e-4),
        "kr ElasticNet scheduled": lambda: kr.ElasticNet(ramp, ramp),
        "keras L1": lambda: keras.regularizers.L1(1e-5),
        "kr L1 proximal": lambda: kr.L1(1e-5, proximal=True),
    }


def build(make_reg):
    keras.utils.set_random_seed(0)
    reg = make_reg()
    model = keras.Sequential(
        [keras.Input((UNITS,))]
        + [
            keras.layers.Dense(
                UNITS, activation="relu", kernel_regularizer=reg, bias_regularizer=reg
            )
            for _ in range(LAYERS)
        ]
        + [keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model


def main(reps, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")
    configs = configurations(total_steps=(reps + 1) * steps)
    models = {name: build(make) for name, make in configs.items()}
    callbacks = {
        name: [kr.callbacks.RegularizationScheduler()]
        for name in configs if "scheduled" in name or "proximal" in name
    }
    medians = time_fits(models, callbacks, x, y, BATCH, reps)
    base = medians["none"]

    def ratio(a, b):
        return round(medians[a] / medians[b], 3)

    result = {
        **header(reps, steps),
        "median_ms": {k: round(v * 1e3, 3) for k, v in medians.items()},
        "ratio_to_none": {k: round(v / base, 3) for k, v in medians.items()},
        "ratios": {
            "kr L2 / keras L2": ratio("kr L2", "keras L2"),
            "kr ElasticNet / keras L1L2": ratio("kr ElasticNet", "keras L1L2"),
            "kr L2 scheduled / kr L2": ratio("kr L2 scheduled", "kr L2"),
            "kr ElasticNet scheduled / kr ElasticNet": ratio(
                "kr ElasticNet scheduled", "kr ElasticNet"
            ),
            "kr L1 proximal / keras L1": ratio("kr L1 proximal", "keras L1"),
        },
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    main(args.reps, args.steps)
