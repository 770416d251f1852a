"""How much of a regularizer's step cost is the penalty, and how much is not.

Times bench_regularizers.py's 24-layer MLP with no regularizer, with a
"floor" regularizer whose penalty is a single element of the weight times 0
(it still sends a gradient into every weight, as any regularizer does, but
computes next to nothing), with `keras.regularizers.L1L2` and with
`kr.ElasticNet`, all on kernels and biases. The cost each adds to the
unregularized step, in ms, shows what is left to gain: what the floor adds
is Keras collecting the regularization losses and autograd adding a second
gradient into each weight's; that part no penalty can avoid.

    KERAS_BACKEND=torch python benchmarks/ab_penalty.py [--reps 11] [--steps 30]
"""

import json

import keras
import numpy as np
from keras import ops

import keras_regx as kr
from _timing import header
from _timing import medians as _medians
from _timing import paired_ratio
from _timing import run_from_command_line
from _timing import time_fits_per_rep
from bench_regularizers import BATCH
from bench_regularizers import UNITS
from bench_regularizers import build


class Floor(keras.regularizers.Regularizer):
    """A penalty of 0 that still has a gradient path into the whole weight."""

    def __call__(self, x):
        corner = ops.reshape(x, (-1,))[:1]
        return ops.sum(corner) * 0.0


def main(reps, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * steps, 1)).astype("float32")
    makers = {
        "none": lambda: None,
        "floor": Floor,
        "keras L1L2": lambda: keras.regularizers.L1L2(1e-5, 1e-4),
        "kr ElasticNet": lambda: kr.ElasticNet(1e-5, 1e-4),
    }
    models = {k: build(m) for k, m in makers.items()}
    times = time_fits_per_rep(models, {}, x, y, BATCH, reps)
    medians = _medians(times)
    result = {
        **header(reps, steps),
        "median_ms": {k: round(v * 1e3, 3) for k, v in medians.items()},
        "added_ms": {
            k: round((v - medians["none"]) * 1e3, 3) for k, v in medians.items()
        },
        "ratios": {
            "kr ElasticNet / keras L1L2": paired_ratio(times, "kr ElasticNet", "keras L1L2"),
            "floor / none": paired_ratio(times, "floor", "none"),
        },
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=11, steps=30)
