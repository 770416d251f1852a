"""Side-by-side timing of `fit()` for several model configurations.

Every configuration trains on the same batches; after one warm-up epoch each
(compilation), the configurations run in a new random order in every
repetition, so slow phases of a noisy machine spread over all of them. The
figure per configuration is the median over repetitions of seconds per step.
"""

import os
import platform
import random
import statistics
import time

import keras


def machine():
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}"


def time_fits(models, callbacks, x, y, batch_size, reps):
    """Median seconds per step of one epoch of `fit()` for each model."""
    steps = len(x) // batch_size

    def run(name):
        start = time.perf_counter()
        models[name].fit(
            x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
            callbacks=callbacks.get(name, []),
        )
        return (time.perf_counter() - start) / steps

    for name in models:  # compile and warm up
        run(name)
    times = {name: [] for name in models}
    order = list(models)
    shuffle = random.Random(0).shuffle
    for _ in range(reps):
        shuffle(order)
        for name in order:
            times[name].append(run(name))
    return {name: statistics.median(t) for name, t in times.items()}


def header(reps, steps):
    return {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": machine(),
        "reps": reps,
        "steps": steps,
    }
