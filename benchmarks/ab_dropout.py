"""A/B check: ScheduledDropout at a constant rate against keras.layers.Dropout.

Times bench_dropout.py's activation model with keras Dropout, with
ScheduledDropout(0.1), and with a second, separately built keras Dropout
model as a control: the control's ratio shows how far two identical models
drift apart on this machine.

    KERAS_BACKEND=tensorflow python benchmarks/ab_dropout.py [--reps 9] [--steps 20]
"""

import json

import keras
import numpy as np

import keras_regx as kr
from _timing import header
from _timing import run_from_command_line
from _timing import time_fits
from bench_dropout import CHANNELS
from bench_dropout import IMAGE
from bench_dropout import IMAGE_BATCH
from bench_dropout import RATE
from bench_dropout import conv_model


def main(reps, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(IMAGE_BATCH * steps, IMAGE, IMAGE, CHANNELS)).astype("float32")
    y = rng.normal(size=(IMAGE_BATCH * steps, 10)).astype("float32")
    makers = {
        "keras Dropout": lambda: keras.layers.Dropout(RATE),
        "ScheduledDropout": lambda: kr.layers.ScheduledDropout(RATE),
        "keras Dropout (control)": lambda: keras.layers.Dropout(RATE),
    }
    medians = time_fits({k: conv_model(m) for k, m in makers.items()}, {}, x, y,
                        IMAGE_BATCH, reps)
    result = {
        **header(reps, steps),
        "ratio_to_keras_dropout": {
            k: round(v / medians["keras Dropout"], 3) for k, v in medians.items()
        },
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_from_command_line(main, reps=9, steps=20)
