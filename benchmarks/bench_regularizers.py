"""Step-time cost of keras_regx regularizers against Keras' own, side by side.

For the backend in KERAS_BACKEND, builds the same model with each
configuration, then times `fit()` over the same batches in interleaved
repetitions (`_timing`) and reports medians, the time each configuration
adds to the unregularized step, and paired ratios with 95% intervals. Two
models:

- `mlp`: 24 Dense layers of 256 units + a Dense(1) head, batch 64;
- `cnn`: a small residual CNN on 16x16x3 inputs, batch 32: a Conv2D(16) stem,
  three residual blocks of two 3x3 Conv2D(16) with BatchNormalization, global
  average pooling, Dense(10).

Every kernel and bias is regularized; SGD. Scheduled configurations (a ramp)
and the proximal one (`kr.L1(proximal=True)`: a soft-threshold after each
update) run with `RegularizationDriver`, whose cost is included. "keras L2
(control)" is a second, separately built Keras L2 model: its ratio to "keras
L2" shows how far two identical models drift apart in the same run. "floor"
is a regularizer whose penalty is one weight entry times 0: it computes next
to nothing but, like any regularizer, sends a gradient into every weight, so
what it adds to the step is Keras collecting the regularization losses and
autograd adding a second gradient into each weight's, which no penalty can
avoid; what a regularizer adds beyond it is what is left to gain.

`--only` times the named configurations with the references of their paired
ratios, "none" and the control pair, e.g. proximal L1 against Keras' L1, or
the penalties against the floor:

    KERAS_BACKEND=torch python benchmarks/bench_regularizers.py [--model cnn] [--reps 7] [--steps 30]
    KERAS_BACKEND=torch python benchmarks/bench_regularizers.py --only "kr L1 proximal" --reps 15
    KERAS_BACKEND=torch python benchmarks/bench_regularizers.py --only floor "kr ElasticNet" --reps 11
    python benchmarks/run_all.py   # every backend, results into RESULTS.md
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from keras import ops

import keras_regx as kr
from _timing import header
from _timing import medians
from _timing import milliseconds
from _timing import only_option
from _timing import paired_ratio
from _timing import run_from_command_line
from _timing import select
from _timing import time_fits_per_rep

LAYERS, UNITS, BATCH = 24, 256, 64
IMAGE, FILTERS, BLOCKS, IMAGE_BATCH = 16, 16, 3, 32

# Timed in every run: the reference of `ratio_to_none` and the control pair.
KEEP = ("none", "keras L2", "keras L2 (control)")
# (configuration, reference) pairs reported as paired ratios.
RATIOS = (
    ("keras L2 (control)", "keras L2"),
    ("floor", "none"),
    ("kr L2", "keras L2"),
    ("kr ElasticNet", "keras L1L2"),
    ("kr L1 proximal", "keras L1"),
    ("kr L2 scheduled", "kr L2"),
    ("kr ElasticNet scheduled", "kr ElasticNet"),
)


class Floor(keras.regularizers.Regularizer):
    """A penalty of 0 that still has a gradient path into the whole weight."""

    def __call__(self, x):
        corner = ops.reshape(x, (-1,))[:1]
        return ops.sum(corner) * 0.0


def configurations(total_steps):
    ramp = kr.schedules.Linear(0.0, 1e-4, end_step=total_steps)
    return {
        "none": lambda: None,
        "floor": Floor,
        "keras L2": lambda: keras.regularizers.L2(1e-4),
        "keras L2 (control)": lambda: keras.regularizers.L2(1e-4),
        "kr L2": lambda: kr.L2(1e-4),
        "kr L2 scheduled": lambda: kr.L2(ramp),
        "keras L1L2": lambda: keras.regularizers.L1L2(1e-5, 1e-4),
        "kr ElasticNet": lambda: kr.ElasticNet(1e-5, 1e-4),
        "kr ElasticNet scheduled": lambda: kr.ElasticNet(ramp, ramp),
        "keras L1": lambda: keras.regularizers.L1(1e-5),
        "kr L1 proximal": lambda: kr.L1(1e-5, proximal=True),
    }


def build(make_reg):
    """The MLP, every kernel and bias regularized by `make_reg()`."""
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


def build_cnn(make_reg):
    """The residual CNN, every kernel and bias regularized by `make_reg()`."""
    keras.utils.set_random_seed(0)
    reg = make_reg()
    L = keras.layers

    def conv(x):
        x = L.Conv2D(FILTERS, 3, padding="same", kernel_regularizer=reg,
                     bias_regularizer=reg)(x)
        return L.BatchNormalization()(x)

    inputs = keras.Input((IMAGE, IMAGE, 3))
    x = L.Activation("relu")(conv(inputs))
    for _ in range(BLOCKS):
        y = conv(L.Activation("relu")(conv(x)))
        x = L.Activation("relu")(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10, kernel_regularizer=reg, bias_regularizer=reg)(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model


MODELS = {"mlp": (build, BATCH, (UNITS,), 1), "cnn": (build_cnn, IMAGE_BATCH, (IMAGE, IMAGE, 3), 10)}


def main(reps, steps, model="mlp", only=None):
    builder, batch, shape, outputs = MODELS[model]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * steps, *shape)).astype("float32")
    y = rng.normal(size=(batch * steps, outputs)).astype("float32")
    references = [b for a, b in RATIOS if only is not None and a in only]
    configs = select(configurations(total_steps=(reps + 1) * steps), only,
                     [*KEEP, *references])
    models = {name: builder(make) for name, make in configs.items()}
    callbacks = {
        name: [kr.callbacks.RegularizationDriver()]
        for name in configs if "scheduled" in name or "proximal" in name
    }
    times = time_fits_per_rep(models, callbacks, x, y, batch, reps)
    median = medians(times)
    base = median["none"]
    result = {
        **header(reps, steps),
        "model": model,
        "median_ms": milliseconds(times),
        "ratio_to_none": {k: round(v / base, 3) for k, v in median.items()},
        "added_ms": {k: round((v - base) * 1e3, 3) for k, v in median.items()},
        "ratios": {f"{a} / {b}": paired_ratio(times, a, b) for a, b in RATIOS
                   if a in times and b in times},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=7, steps=30,
                          model={"choices": sorted(MODELS), "default": "mlp"},
                          only=only_option(configurations(1)))
