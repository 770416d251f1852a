"""A/B check: proximal L1 against Keras' L1 on the benchmark MLP.

Times bench_regularizers.py's 24-layer MLP with `keras.regularizers.L1`, with
`kr.L1(proximal=True)` (soft-threshold after each update, installed by
`RegularizationScheduler`), and with a second Keras L1 model as a control: the
control's ratio shows how far two identical models drift apart on this
machine. Both penalties are on kernels and biases; SGD.

    KERAS_BACKEND=torch python benchmarks/ab_proximal.py [--reps 15] [--steps 30]
"""

import json

import keras
import numpy as np

import keras_regx as kr
from _timing import header
from _timing import medians as _medians
from _timing import paired_ratio
from _timing import run_from_command_line
from _timing import time_fits_per_rep
from bench_regularizers import BATCH
from bench_regularizers import UNITS
from bench_regularizers import build


def main(reps, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")
    makers = {
        "keras L1": lambda: keras.regularizers.L1(1e-5),
        "kr L1 proximal": lambda: kr.L1(1e-5, proximal=True),
        "keras L1 (control)": lambda: keras.regularizers.L1(1e-5),
    }
    models = {k: build(m) for k, m in makers.items()}
    callbacks = {"kr L1 proximal": [kr.callbacks.RegularizationScheduler()]}
    times = time_fits_per_rep(models, callbacks, x, y, BATCH, reps)
    medians = _medians(times)
    result = {
        **header(reps, steps),
        "median_ms": {k: round(v * 1e3, 3) for k, v in medians.items()},
        # Paired: median [95% interval] of the per-repetition ratios.
        "ratio_to_keras_l1": {
            k: paired_ratio(times, k, "keras L1") for k in medians if k != "keras L1"
        },
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=15, steps=30)
