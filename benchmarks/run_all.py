"""Runs every benchmark on every backend and writes benchmarks/RESULTS.md.

    python benchmarks/run_all.py [--reps 7] [--steps 30]

Each backend runs in its own process (KERAS_BACKEND is read at import).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("tensorflow", "jax", "torch")


def run(script, backend, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, script), *args],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def regularizer_table(results):
    names = list(results[0]["median_ms"])
    lines = [
        "| configuration | " + " | ".join(r["backend"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for name in names:
        cells = [
            f"{r['median_ms'][name]:.2f} ms ({r['ratio_to_none'][name]:.2f}x)"
            for r in results
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| ratio | " + " | ".join(r["backend"] for r in results) + " |")
    lines.append("|---|" + "---|" * len(results))
    for key in results[0]["ratio_to_keras"]:
        cells = [f"{r['ratio_to_keras'][key]:.3f}" for r in results]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", default="7")
    parser.add_argument("--steps", default="30")
    args = parser.parse_args()
    flags = ["--reps", args.reps, "--steps", args.steps]
    results = [run("bench_regularizers.py", b, flags) for b in BACKENDS]
    versions = subprocess.run(
        [sys.executable, "-c",
         "import keras, numpy; print(f'keras {keras.__version__}, numpy {numpy.__version__}')"],
        capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="jax"),
    ).stdout.strip()
    text = f"""# Benchmark results

Machine: {results[0]['machine']}, Python {platform.python_version()}, {versions}.
Date: {datetime.date.today().isoformat()}. Command: `python benchmarks/run_all.py --reps {args.reps} --steps {args.steps}`.

## Regularizer step time (`bench_regularizers.py`)

24 Dense layers of 256 units + a Dense(1) head, batch 64, SGD, kernel and bias
regularized; median seconds per step of `fit()` over {args.steps} steps, {args.reps}
interleaved repetitions; in brackets the ratio to no regularization. Scheduled
configurations run with `RegularizationScheduler(update_freq="batch")`, whose
cost is included.

{regularizer_table(results)}
"""
    with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
