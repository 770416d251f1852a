"""Cost of `SparsityMonitor` against training without it, side by side.

For the backend in KERAS_BACKEND, builds the 24-layer MLP of
`bench_regularizers.py` (256 units, batch 64) twice, trains one with
`SparsityMonitor()` (update_freq="epoch") and one without, in interleaved
repetitions of one epoch each (`_timing`), and reports the median epoch
times and their ratio. Since a noisy machine's spread (several %) hides a 1%
cost, it also times the monitor's measurement alone (the compiled pass the
monitor builds, `keras_regx._counting.Counter`, and its host transfer; median
of `--calls` calls) as a fraction of the epoch time, and the scan's
throughput (weight bytes per second: one compiled pass counting the zeros of
every weight) against a plain device copy of the same weights (one compiled
elementwise pass writing every weight once).

    KERAS_BACKEND=jax python benchmarks/bench_sparsity.py [--reps 9] [--steps 30] [--calls 200]
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from keras import ops

import keras_regx as kr
from _timing import header
from _timing import median_seconds
from _timing import medians
from _timing import run_from_command_line
from _timing import time_fits_per_rep
from bench_regularizers import BATCH
from bench_regularizers import UNITS
from bench_regularizers import build
from keras_regx._backend import compiled
from keras_regx._counting import Counter
from keras_regx._counting import count_zeros


def _sync(out):
    """Waits for the device to finish `out`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.block_until_ready(out)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    elif backend == "tensorflow":
        # Eager TensorFlow has run the ops when the call returns on CPU; on a
        # GPU, reading one element waits for the stream.
        ops.convert_to_numpy(out[0][(0,) * len(out[0].shape)])


def main(reps, steps, calls):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")
    models = {"none": build(lambda: None), "monitor": build(lambda: None)}
    callbacks = {"monitor": [kr.callbacks.SparsityMonitor()]}
    times = time_fits_per_rep(models, callbacks, x, y, BATCH, reps)
    epoch = {k: v * steps for k, v in medians(times).items()}

    # What SparsityMonitor() measures at each epoch end: one compiled pass
    # (its default regularization_loss=True sums the penalties too) and one
    # host transfer of the counts.
    model = models["monitor"]
    counter = Counter(model, penalty=True)
    measure = median_seconds(counter, calls)
    assert counter() == kr.sparsity.model_sparsity(model)

    variables = counter.variables
    values = [v.value for v in variables]
    nbytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    scan_fn = compiled(lambda vals: ops.stack([count_zeros(v, 0.0) for v in vals]))
    scan = median_seconds(lambda: ops.convert_to_numpy(scan_fn(values)), calls)
    copy_fn = compiled(lambda vals: [ops.negative(v) for v in vals])
    copy = median_seconds(lambda: _sync(copy_fn(values)), calls)

    result = {
        **header(reps, steps),
        "epoch_ms": {k: round(v * 1e3, 2) for k, v in epoch.items()},
        "ratio_monitor_to_none": round(epoch["monitor"] / epoch["none"], 4),
        "measure_ms": round(measure * 1e3, 4),
        "measure_fraction_of_epoch": round(measure / epoch["none"], 5),
        "weights": len(variables),
        "weight_bytes": nbytes,
        "scan_GB_per_s": round(nbytes / scan / 1e9, 3),
        "copy_GB_per_s": round(nbytes / copy / 1e9, 3),
        "scan_time_to_copy_time": round(scan / copy, 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=9, steps=30, calls={"type": int, "default": 200})
