"""Time `import keras_regx` adds on top of `import keras`.

For the backend in KERAS_BACKEND, runs fresh Python processes that import
Keras alone and Keras then keras_regx, interleaved, and reports the median
wall time of each and their difference.

    KERAS_BACKEND=jax python benchmarks/bench_import.py [--reps 7]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _timing import machine

STATEMENTS = {"keras": "import keras", "keras + keras_regx": "import keras, keras_regx"}


def run(statement):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main(reps):
    for statement in STATEMENTS.values():  # warm the file cache
        run(statement)
    times = {name: [] for name in STATEMENTS}
    for _ in range(reps):
        for name, statement in STATEMENTS.items():
            times[name].append(run(statement))
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "machine": machine(),
        "reps": reps,
        "median_ms": {k: round(v * 1e3, 1) for k, v in medians.items()},
        "added_ms": round((medians["keras + keras_regx"] - medians["keras"]) * 1e3, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    main(parser.parse_args().reps)
