"""Step time of magnitude pruning (`kr.pruning.prune`) against the unpruned model.

The benchmark MLP of `bench_regularizers.py` (24 Dense layers of 256 units,
batch 64), Adam, every kernel pruned, trained with `RegularizationDriver`:

- `unpruned` (the reference) and `unpruned (control)`: the run's noise;
- `keras NonNeg`: every kernel with Keras' `NonNeg` constraint, what a
  Keras constraint costs a step (Keras assigns each constrained weight
  after each update; a pruning mask is applied as one);
- `frequency=100`: `PolynomialDecay(0.0, 0.8)` over the run, masks updated
  every 100 steps (TF Model Optimization's default);
- `2:4, frequency=100`: two zeros in every four inputs;
- `frequency=1`: masks recomputed at every step: what one mask update
  costs.

Median step times and paired ratios to `unpruned` with 95% intervals
(`_timing`). Steps continue across the timed fits, so masks update every
100 steps of the whole run.

    KERAS_BACKEND=jax python benchmarks/bench_pruning.py [--reps 9] [--steps 60]
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
from bench_regularizers import UNITS
from bench_weight_decay import build as build_mlp

REFERENCE = "unpruned"


def build(prune):
    """The benchmark MLP with Adam, pruned by `prune` (None: not pruned)."""
    model = build_mlp(lambda: keras.optimizers.Adam(1e-3))
    if prune is not None:
        model = prune(model)
        model.compile(keras.optimizers.Adam(1e-3), "mse")
    return model


def keras_constraint(model):
    """A copy of `model` with Keras' `NonNeg` on every kernel."""
    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(),
                                            "kernel_constraint": keras.constraints.NonNeg()})

    return keras.models.clone_model(model, clone_function=clone)


def main(reps, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")
    total = (reps + 1) * steps

    def decay(frequency):
        return kr.pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=total,
                                          frequency=frequency)

    configs = {
        REFERENCE: None,
        "unpruned (control)": None,
        "keras NonNeg": keras_constraint,
        "frequency=100": lambda m: kr.pruning.prune(m, decay(100)),
        "2:4, frequency=100": lambda m: kr.pruning.prune(
            m, kr.pruning.ConstantSparsity(0.5, begin_step=0, frequency=100), granularity="2:4"),
        "frequency=1": lambda m: kr.pruning.prune(m, decay(1)),
    }
    models = {name: build(prune) for name, prune in configs.items()}
    callbacks = {name: [kr.callbacks.RegularizationDriver()] for name in configs}
    times = time_fits_per_rep(models, callbacks, x, y, BATCH, reps)
    kernels = [layer.kernel for layer in models["frequency=100"].layers]
    result = {
        **header(reps, steps),
        "median_ms": milliseconds(times),
        "ratio_to_unpruned": paired_ratios(times, REFERENCE),
        "final_sparsity": round(sum(int((keras.ops.convert_to_numpy(k) == 0).sum()) for k in kernels)
                                / sum(int(np.prod(k.shape)) for k in kernels), 4),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=9, steps=60)
