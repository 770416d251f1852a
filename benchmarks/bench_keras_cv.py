"""keras_regx's DropBlock2D against keras-cv's, in step time and in what it drops.

Times bench_dropout.py's activation model (rate 0.1) with keras Dropout, with
`kr.layers.DropBlock2D(RATE, block_size=5)`, with keras-cv 0.9.0's
`DropBlock2D(rate=RATE, block_size=5)` and with a second keras Dropout model as
a noise control, side by side (`_timing`: interleaved repetitions, medians,
paired ratios to keras Dropout with 95% intervals):

- compiled: `fit()` as Keras compiles it for the backend;
- eager: the same models compiled with `run_eagerly=True`, run only when
  keras-cv's layer works eagerly, since that is then the only way to time it.

A keras-cv row that fails to import, to run, or to train (one
`train_on_batch` probe) is left out, and `notes` says why.

Outside timing, the fraction of units each DropBlock2D drops (ones in, zeros
out, 5 seeded calls with `training=True`, block_size 5) on non-square and
square inputs, channels-last and channels-first, at rates 0.1 and 0.3, with
the mean output (1.0 preserves the input's mean) and the rows and columns that
no call dropped. keras-cv's layer has no `data_format` argument.

keras-cv goes into a separate folder, with what its import needs
(tensorflow must also be installed, whatever the backend; tensorflow-datasets'
own optional imports then fail and log a traceback on stderr, harmlessly):

    pip install --no-deps --target /tmp/kcv_site keras-cv==0.9.0 dm-tree \
        regex tensorflow-datasets etils
    PYTHONPATH=/tmp/kcv_site KERAS_BACKEND=tensorflow \
        python benchmarks/bench_keras_cv.py [--reps 9] [--steps 20]

Without keras-cv on the path the script runs the other rows (so does
`run_all.py`, which passes its environment, PYTHONPATH included, on).
"""

import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr
from _timing import header
from _timing import milliseconds
from _timing import paired_ratios
from _timing import run_from_command_line
from _timing import time_fits_per_rep
from bench_dropout import CHANNELS
from bench_dropout import IMAGE
from bench_dropout import IMAGE_BATCH
from bench_dropout import RATE
from bench_dropout import conv_model

BLOCK = 5
KERAS_CV = "keras_cv DropBlock2D(5)"
CHANNELS_LAST_SHAPES = ((64, 40, 24, 8), (64, 24, 40, 8), (64, 32, 32, 8))
CHANNELS_FIRST_SHAPE = (64, 8, 40, 24)
RATES = (0.1, 0.3)
CALLS = 5


def error(e):
    """The first line of what an exception says, for the JSON notes."""
    # Keras wraps a layer's error in "Exception encountered when calling ..."
    # and bold ANSI codes; the original message is the next line.
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith("Exception encountered")]
    message = f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]
    # Under jit, Keras' rewrapping of JAX's ConcretizationTypeError itself
    # fails (AttributeError); the error it was handling is the one to read.
    if e.__context__ is not None and type(e.__context__) is not type(e):
        message += f" (raised while handling {error(e.__context__)})"
    return message


def import_keras_cv(notes):
    """keras-cv's DropBlock2D class and version, or (None, None) with a note."""
    try:
        import keras_cv
        from keras_cv.layers import DropBlock2D
    except Exception as e:  # an import failure of any kind skips the row
        notes.append(f"keras_cv not imported: {error(e)}")
        return None, None
    return DropBlock2D, keras_cv.__version__


def eager(model):
    # conv_model's optimizer and loss, compiled again to run eagerly.
    model.compile(keras.optimizers.SGD(1e-3), "mse", run_eagerly=True)
    return model


def dropped(make, shape, data_format, calls):
    """Drop statistics of `calls` layers from `make(seed)` on ones of `shape`."""
    x = np.ones(shape, "float32")
    zeros, total = [], 0.0
    for seed in range(calls):
        y = keras.ops.convert_to_numpy(make(seed)(x, training=True))
        zeros.append(y == 0)
        total += float(y.mean())
    zeros = np.stack(zeros)  # (calls, *shape)
    row, col = (3, 4) if data_format == "channels_first" else (2, 3)

    def never_dropped(axis):
        return int((~zeros.any(axis=tuple(a for a in range(zeros.ndim) if a != axis))).sum())

    return {
        "dropped": round(float(zeros.mean()), 4),
        "output_mean": round(total / calls, 4),
        "rows_never_dropped": never_dropped(row),
        "cols_never_dropped": never_dropped(col),
    }


def drop_statistics(cv_layer, notes):
    def kr_maker(rate, data_format):
        return lambda seed: kr.layers.DropBlock2D(
            rate, BLOCK, data_format=data_format, seed=seed)

    def cv_maker(rate, data_format):
        # keras-cv's layer has no data_format; passing it shows what happens.
        kwargs = {} if data_format == "channels_last" else {"data_format": data_format}
        return lambda seed: cv_layer(rate=rate, block_size=BLOCK, seed=seed, **kwargs)

    makers = {"kr DropBlock2D": kr_maker}
    if cv_layer is not None:
        makers["keras_cv DropBlock2D"] = cv_maker
    cases = [("channels_last", shape) for shape in CHANNELS_LAST_SHAPES]
    cases.append(("channels_first", CHANNELS_FIRST_SHAPE))
    stats, failures = {}, {}
    for data_format, shape in cases:
        key = f"{data_format} {shape}"
        stats[key] = {}
        for name, make in makers.items():
            for rate in RATES:
                try:
                    result = dropped(make(rate, data_format), shape, data_format, CALLS)
                except Exception as e:  # recorded: keras-cv fails on some backends
                    failures.setdefault((name, error(e)), []).append(key)
                    break
                stats[key].setdefault(name, {})[f"rate={rate}"] = result
    for (name, message), keys in failures.items():
        notes.append(f"{name} not measured on {'; '.join(keys)}: {message}")
    return stats


def main(reps, steps):
    notes = []
    cv_layer, cv_version = import_keras_cv(notes)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(IMAGE_BATCH * steps, IMAGE, IMAGE, CHANNELS)).astype("float32")
    y = rng.normal(size=(IMAGE_BATCH * steps, 10)).astype("float32")
    makers = {
        "keras Dropout": lambda: keras.layers.Dropout(RATE),
        "kr DropBlock2D(5)": lambda: kr.layers.DropBlock2D(RATE, block_size=BLOCK),
        "keras Dropout (control)": lambda: keras.layers.Dropout(RATE),
    }
    if cv_layer is not None:
        makers[KERAS_CV] = lambda: cv_layer(rate=RATE, block_size=BLOCK)

    def probe(model, mode):
        """Whether `model` trains one step; notes why not."""
        try:
            model.train_on_batch(x[:IMAGE_BATCH], y[:IMAGE_BATCH])
        except Exception as e:  # recorded: the keras-cv row is left out
            notes.append(f"{KERAS_CV} left out of {mode} fit: {error(e)}")
            return False
        return True

    result = {**header(reps, steps), "keras_cv": cv_version}
    for mode, prepare in (("compiled", lambda m: m), ("eager", eager)):
        models = {name: prepare(conv_model(make)) for name, make in makers.items()}
        if KERAS_CV in models and not probe(models[KERAS_CV], mode):
            del models[KERAS_CV]
        if mode == "eager" and KERAS_CV not in models:
            notes.append("eager fit not timed: it is there only for the keras_cv row")
            break
        times = time_fits_per_rep(models, {}, x, y, IMAGE_BATCH, reps)
        result[f"{mode}_ms"] = milliseconds(times)
        result[f"{mode}_ratio_to_keras_dropout"] = paired_ratios(times, "keras Dropout")

    result["drop_statistics"] = drop_statistics(cv_layer, notes)
    result["notes"] = notes
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=9, steps=20)
