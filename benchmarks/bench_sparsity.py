"""Cost of `SparsityMonitor` against training without it, side by side.

For the backend in KERAS_BACKEND, builds the 24-layer MLP of
`bench_regularizers.py` (256 units, batch 64) twice, trains one with
`SparsityMonitor()` (update_freq="epoch") and one without, in interleaved
repetitions of one epoch each (`_timing.time_fits`), and reports the median
epoch times and their ratio. Since this machine's noise (several %) hides a 1%
cost, it also times the monitor's measurement alone (median of many calls)
as a fraction of the epoch time, and the scan's throughput (weight bytes per
second) against a plain device copy of the same weights (one compiled
elementwise pass writing every weight once).

    KERAS_BACKEND=jax python benchmarks/bench_sparsity.py [--reps 9] [--steps 30] [--calls 200]
"""

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from keras import ops

import keras_regx as kr
from _timing import header
from _timing import run_from_command_line
from _timing import time_fits
from bench_regularizers import BATCH
from bench_regularizers import UNITS
from bench_regularizers import build
from keras_regx.sparsity import _compile


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


def median_seconds(fn, calls):
    fn()  # compile
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(reps, steps, calls):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")
    models = {"none": build(lambda: None), "monitor": build(lambda: None)}
    monitor = kr.callbacks.SparsityMonitor()
    medians = time_fits(models, {"monitor": [monitor]}, x, y, BATCH, reps)
    epoch = {k: v * steps for k, v in medians.items()}

    model = models["monitor"]
    measure = median_seconds(monitor._measure, calls)  # counts + host transfer
    counter = monitor._counter
    values = [v.value for v in counter.variables]
    nbytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in counter.variables)
    scan = median_seconds(
        lambda: ops.convert_to_numpy(counter._measure(values, [], [])[0]), calls)
    copy_fn = _compile(lambda vals: [ops.negative(v) for v in vals])
    copy = median_seconds(lambda: _sync(copy_fn(values)), calls)
    assert monitor._measure() == kr.sparsity.model_sparsity(model)

    result = {
        **header(reps, steps),
        "epoch_ms": {k: round(v * 1e3, 2) for k, v in epoch.items()},
        "ratio_monitor_to_none": round(epoch["monitor"] / epoch["none"], 4),
        "measure_ms": round(measure * 1e3, 4),
        "measure_fraction_of_epoch": round(measure / epoch["none"], 5),
        "weights": len(counter.variables),
        "weight_bytes": nbytes,
        "scan_GB_per_s": round(nbytes / scan / 1e9, 3),
        "copy_GB_per_s": round(nbytes / copy / 1e9, 3),
        "scan_time_to_copy_time": round(scan / copy, 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=9, steps=30, calls={"type": int, "default": 200})
