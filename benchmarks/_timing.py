"""The one timing module of the benchmarks: interleaved repetitions, medians.

`interleaved` calls several functions once each (compilation, caches), then
in every repetition calls them all in a new random order, so slow phases of
a noisy machine spread over all of them; `time_fits_per_rep` does it with one
epoch of `fit()` per model (seconds per step) and `median_seconds` with one
function called many times (`timed`: one call, for what runs once). A
figure is the median over repetitions (`medians`).

`paired_ratio` compares two configurations repetition by repetition (both ran
within seconds of each other in the same repetition) and gives the median of
those ratios with a distribution-free 95% confidence interval: the figure that
says whether a ratio differs from 1 on this machine.

Every script's command line goes through `run_from_command_line`.
"""

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time

import keras


def machine():
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}"


def interleaved(functions, reps, number=1):
    """Seconds per call of each of `functions` (a dict), a list per name.

    Each function is called once first (compilation, caches); then each of
    `reps` repetitions times `number` consecutive calls of every function, the
    functions in a new random order (seeded) each repetition.
    """
    for fn in functions.values():  # compile and warm up
        fn()
    times = {name: [] for name in functions}
    order = random.Random(0)
    for _ in range(reps):
        for name, seconds in repetition(functions, order, number).items():
            times[name].append(seconds)
    return times


def repetition(functions, order, number=1):
    """One repetition of `interleaved`: seconds per call of each of
    `functions`, timed over `number` consecutive calls, the functions in an
    order `order` (a `random.Random`) shuffles anew."""
    names = list(functions)
    order.shuffle(names)
    times = {}
    for name in names:
        start = time.perf_counter()
        for _ in range(number):
            functions[name]()
        times[name] = (time.perf_counter() - start) / number
    return {name: times[name] for name in functions}


def time_fits_per_rep(models, callbacks, x, y, batch_size, reps):
    """Seconds per step of one epoch of `fit()`, a list per model (one per rep).

    `callbacks` maps a model's name to the callbacks of its fits (none if
    absent); every model trains on the same batches, unshuffled.
    """
    steps = len(x) // batch_size

    def fit(name):
        return lambda: models[name].fit(
            x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
            callbacks=callbacks.get(name, []),
        )

    times = interleaved({name: fit(name) for name in models}, reps)
    return {name: [t / steps for t in ts] for name, ts in times.items()}


def median_seconds(fn, calls, number=1):
    """Median seconds per call of `fn` over `calls` timings of `number` calls
    each, after one warm-up call."""
    return statistics.median(interleaved({"fn": fn}, calls, number)["fn"])


def timed(fn):
    """`fn()` called once, and the seconds it took: `(result, seconds)`."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def medians(times):
    """The median of each configuration's per-repetition times."""
    return {name: statistics.median(t) for name, t in times.items()}


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


def paired_ratios(times, reference):
    """`paired_ratio` of every configuration but `reference` to `reference`."""
    return {name: paired_ratio(times, name, reference) for name in times if name != reference}


def milliseconds(times, digits=3):
    """The median of each configuration's times, in ms."""
    return {name: round(t * 1e3, digits) for name, t in medians(times).items()}


def select(configurations, only, keep):
    """The entries of `configurations` to time, in their order.

    With `only` None (no `--only` on the command line), all of them; else the
    ones named in `only` and, if there is any, those named in `keep` (the
    references and controls they are compared with); none if `only` names
    none of them.
    """
    if only is None:
        return dict(configurations)
    if not set(only) & set(configurations):
        return {}
    wanted = set(only) | set(keep)
    return {name: make for name, make in configurations.items() if name in wanted}


def only_option(names):
    """The `--only` option of a script whose configurations are `names`."""
    return {
        "nargs": "+", "choices": list(names), "metavar": "CONFIGURATION",
        "help": "time only these configurations, with their references and "
                "the noise control (default: all); one of %(choices)s",
    }


def header(reps, steps=None):
    """The fields every result starts with."""
    result = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": machine(),
        "reps": reps,
    }
    if steps is not None:
        result["steps"] = steps
    return result


def run_from_command_line(main, reps, steps=None, **options):
    """Calls `main(reps=..., steps=..., **options)` with the command line's values.

    `--reps` and `--steps` default to `reps` and `steps` (no `--steps`, and no
    `steps` argument, when `steps` is None); each of `options` maps an
    option's name to the keyword arguments of its
    `ArgumentParser.add_argument`.
    """
    doc = sys.modules[main.__module__].__doc__ or ""
    parser = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    parser.add_argument("--reps", type=int, default=reps)
    if steps is not None:
        parser.add_argument("--steps", type=int, default=steps)
    for name, spec in options.items():
        parser.add_argument(f"--{name}", **spec)
    main(**vars(parser.parse_args()))

