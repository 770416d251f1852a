"""Training-step cost of the keras_regx dropout layers against Keras' Dropout.

For the backend in KERAS_BACKEND, two models, each built once per
configuration and timed side by side (`_timing`: interleaved repetitions,
medians, paired ratios with 95% intervals):

- activations: Conv2D(32) -> drop -> Conv2D(32) -> drop -> pooling -> Dense(10)
  on 32x32x32 inputs, batch 32: the drop layers act on (32, 32, 32, 32)
  tensors, so their cost is visible next to the convolutions. Paired ratios
  to `keras.layers.Dropout(0.1)`.
- weights: three Dense(512) layers with Dropout(0.3) after each, against three
  DropConnectDense(512, rate=0.3), batch 128. Paired ratios to Dense + Dropout.

Each model also runs with a second, separately built Keras Dropout model
("(control)"): its ratio to the first shows how far two identical models
drift apart in the same run. `--only` times the named configurations with
their model's reference and control, e.g. ScheduledDropout at a constant rate
against Keras' Dropout alone:

    KERAS_BACKEND=jax python benchmarks/bench_dropout.py [--reps 7] [--steps 20]
    KERAS_BACKEND=tensorflow python benchmarks/bench_dropout.py --only ScheduledDropout --reps 9
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr
from _timing import header
from _timing import milliseconds
from _timing import only_option
from _timing import paired_ratios
from _timing import run_from_command_line
from _timing import select
from _timing import time_fits_per_rep

RATE = 0.1
IMAGE, CHANNELS, IMAGE_BATCH = 32, 32, 32
UNITS, DENSE_BATCH = 512, 128
# Per model: the configuration the others are compared with, and its control.
ACTIVATIONS = ("keras Dropout", "keras Dropout (control)")
WEIGHTS = ("Dense + keras Dropout", "Dense + keras Dropout (control)")


def ramp(steps):
    return kr.schedules.Linear(0.0, 2 * RATE, end_step=steps)


def activation_configurations(total_steps):
    return {
        "no dropout": lambda: keras.layers.Identity(),
        "keras Dropout": lambda: keras.layers.Dropout(RATE),
        "keras Dropout (control)": lambda: keras.layers.Dropout(RATE),
        "ScheduledDropout": lambda: kr.layers.ScheduledDropout(RATE),
        "ScheduledDropout scheduled": lambda: kr.layers.ScheduledDropout(ramp(total_steps)),
        "MCDropout": lambda: kr.layers.MCDropout(RATE),
        "DropPath": lambda: kr.layers.DropPath(RATE),
        "DropPath scheduled": lambda: kr.layers.DropPath(ramp(total_steps)),
        "DropBlock2D(5)": lambda: kr.layers.DropBlock2D(RATE, 5),
        "DropBlock2D(5) scheduled": lambda: kr.layers.DropBlock2D(ramp(total_steps), 5),
    }


def conv_model(make_drop):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((IMAGE, IMAGE, CHANNELS)),
        keras.layers.Conv2D(CHANNELS, 3, padding="same", activation="relu"),
        make_drop(),
        keras.layers.Conv2D(CHANNELS, 3, padding="same", activation="relu"),
        make_drop(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model


def weight_configurations(total_steps):
    def dense(**kwargs):
        return lambda: keras.layers.Dense(UNITS, activation="relu", **kwargs)

    return {
        "Dense": (dense(), None),
        "Dense + keras Dropout": (dense(), lambda: keras.layers.Dropout(0.3)),
        "Dense + keras Dropout (control)": (dense(), lambda: keras.layers.Dropout(0.3)),
        "DropConnectDense": (
            lambda: kr.layers.DropConnectDense(UNITS, 0.3, activation="relu"), None),
        "DropConnectDense scheduled": (
            lambda: kr.layers.DropConnectDense(
                UNITS, kr.schedules.Linear(0.2, 0.4, end_step=total_steps),
                activation="relu"),
            None),
    }


def mlp_model(make_dense, make_drop):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((UNITS,))]
    for _ in range(3):
        layers.append(make_dense())
        if make_drop is not None:
            layers.append(make_drop())
    model = keras.Sequential(layers + [keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model


def scheduler_for(names):
    return {n: [kr.callbacks.RegularizationDriver()] for n in names if "scheduled" in n}


def main(reps, steps, only=None):
    rng = np.random.default_rng(0)
    total = (reps + 1) * steps
    result = header(reps, steps)

    configs = select(activation_configurations(total), only, ACTIVATIONS)
    if configs:
        x = rng.normal(size=(IMAGE_BATCH * steps, IMAGE, IMAGE, CHANNELS)).astype("float32")
        y = rng.normal(size=(IMAGE_BATCH * steps, 10)).astype("float32")
        models = {name: conv_model(make) for name, make in configs.items()}
        conv = time_fits_per_rep(models, scheduler_for(configs), x, y, IMAGE_BATCH, reps)
        result["activations_ms"] = milliseconds(conv)
        result["activations_ratio"] = paired_ratios(conv, ACTIVATIONS[0])

    configs = select(weight_configurations(total), only, WEIGHTS)
    if configs:
        x = rng.normal(size=(DENSE_BATCH * steps, UNITS)).astype("float32")
        y = rng.normal(size=(DENSE_BATCH * steps, 10)).astype("float32")
        models = {name: mlp_model(*makers) for name, makers in configs.items()}
        mlp = time_fits_per_rep(models, scheduler_for(configs), x, y, DENSE_BATCH, reps)
        result["weights_ms"] = milliseconds(mlp)
        result["weights_ratio"] = paired_ratios(mlp, WEIGHTS[0])

    print(json.dumps(result))
    return result


if __name__ == "__main__":
    names = [*activation_configurations(1), *weight_configurations(1)]
    run_from_command_line(main, reps=7, steps=20, only=only_option(names))
