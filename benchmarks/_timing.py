"""Side-by-side timing of `fit()` for several model configurations.

Every configuration trains on the same batches; after one warm-up epoch each
(compilation), the configurations run in a new random order in every
repetition, so slow phases of a noisy machine spread over all of them. The
figure per configuration is the median over repetitions of seconds per step.

`paired_ratio` compares two configurations repetition by repetition (both ran
within seconds of each other in the same repetition) and gives the median of
those ratios with a distribution-free 95% confidence interval: the figure that
says whether a ratio differs from 1 on this machine.
"""

import argparse
import math
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
    return medians(time_fits_per_rep(models, callbacks, x, y, batch_size, reps))


def medians(times):
    """The median of each configuration's per-repetition times."""
    return {name: statistics.median(t) for name, t in times.items()}


def time_fits_per_rep(models, callbacks, x, y, batch_size, reps):
    """Seconds per step of one epoch of `fit()`, a list per model (one per rep)."""
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
    return times


def median_interval(values, confidence=0.95):
    """The median of `values` and a distribution-free confidence interval.

    The interval runs between the order statistics whose ranks a Binomial(n,
    1/2) count puts around the median with at least `confidence` coverage
    (for 15 values: the 4th and the 12th smallest).
    """
    values = sorted(values)
    n = len(values)
    tail = (1.0 - confidence) / 2.0
    k, below = 0, 0.0  # below = P(Binomial(n, 1/2) <= k - 1)
    while below + math.comb(n, k) / 2.0**n <= tail:
        below += math.comb(n, k) / 2.0**n
        k += 1
    k = max(k, 1)  # rank k (1-based) from each end; n < 6 gives the range
    return statistics.median(values), values[k - 1], values[n - k]


def paired_ratio(times, name, reference):
    """Median of `name / reference` over repetitions, with its 95% interval."""
    ratios = [a / b for a, b in zip(times[name], times[reference])]
    return [round(v, 3) for v in median_interval(ratios)]


def header(reps, steps):
    return {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": machine(),
        "reps": reps,
        "steps": steps,
    }


def run_from_command_line(main, reps, steps, **options):
    """Calls `main(reps=..., steps=..., **options)` with the command line's values.

    `--reps` and `--steps` default to `reps` and `steps`; each of `options`
    maps an option's name to the keyword arguments of its
    `ArgumentParser.add_argument`.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--steps", type=int, default=steps)
    for name, spec in options.items():
        parser.add_argument(f"--{name}", **spec)
    main(**vars(parser.parse_args()))
