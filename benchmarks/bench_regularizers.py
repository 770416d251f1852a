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
import platform
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr

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
        name: [kr.callbacks.RegularizationScheduler()] if "scheduled" in name else []
        for name in configs
    }

    def run(name):
        start = time.perf_counter()
        models[name].fit(
            x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False,
            callbacks=callbacks[name],
        )
        return (time.perf_counter() - start) / steps

    for name in configs:  # compile and warm up
        run(name)
    times = {name: [] for name in configs}
    order = list(configs)
    shuffle = random.Random(0).shuffle
    for _ in range(reps):
        shuffle(order)
        for name in order:
            times[name].append(run(name))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["none"]
    result = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "reps": reps,
        "steps": steps,
        "median_ms": {k: round(v * 1e3, 3) for k, v in medians.items()},
        "ratio_to_none": {k: round(v / base, 3) for k, v in medians.items()},
        "ratio_to_keras": {
            "kr L2 / keras L2": round(medians["kr L2"] / medians["keras L2"], 3),
            "kr ElasticNet / keras L1L2": round(
                medians["kr ElasticNet"] / medians["keras L1L2"], 3
            ),
            "kr L2 scheduled / kr L2": round(
                medians["kr L2 scheduled"] / medians["kr L2"], 3
            ),
            "kr ElasticNet scheduled / kr ElasticNet": round(
                medians["kr ElasticNet scheduled"] / medians["kr ElasticNet"], 3
            ),
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
