"""Runs every benchmark on every backend and writes benchmarks/RESULTS.md.

    python benchmarks/run_all.py [--reps 7] [--steps 30] [--resume]

Each backend runs in its own process (KERAS_BACKEND is read at import). The
sections it generates replace those of the same title in RESULTS.md; every
other section ("Magnitude pruning", "Reading these numbers", ..., written by
hand after a run) is kept where it stands. The
keras-cv row of `bench_keras_cv.py` needs keras-cv on PYTHONPATH (see that
script's docstring); without it the other rows run.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
BACKENDS = ("tensorflow", "jax", "torch")
NOTES = "## Reading these numbers"
PARTIAL = os.path.join(HERE, ".partial_results.json")  # git-ignored
RESUME = False


def run(script, backend, args):
    """Runs one benchmark on one backend; its JSON result, kept in PARTIAL.

    With `--resume`, a result already in PARTIAL for the same script,
    backend and arguments is reused instead of run again (a run that failed
    halfway need not start over).
    """
    key = f"{script} {backend} {' '.join(args)}"
    if RESUME and key in _partial():
        return _partial()[key]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, script), *args],
        env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"{key} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    done = {**_partial(), key: result}
    with open(PARTIAL, "w") as f:
        json.dump(done, f)
    return result


def _partial():
    if not os.path.exists(PARTIAL):
        return {}
    with open(PARTIAL) as f:
        return json.load(f)


def table(results, times, ratios, reference):
    """Rows: configurations; columns: backends; cells: time and ratio.

    A ratio is a float (ratio of medians) or a paired ratio `[median, low,
    high]`; the reference itself has no entry (1x).
    """
    def cell(r, name):
        ratio = r[ratios].get(name, 1.0)
        if isinstance(ratio, list):
            return f"{r[times][name]:.2f} ms ({ratio[0]:.2f}x [{ratio[1]:.2f}, {ratio[2]:.2f}])"
        return f"{r[times][name]:.2f} ms ({ratio:.2f}x)"

    lines = [
        "| configuration | " + " | ".join(r["backend"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for name in _names(results, times):
        lines.append(f"| {name} | " + " | ".join(
            cell(r, name) if name in r[times] else "not run" for r in results) + " |")
    return "\n".join(lines) + f"\n\nIn brackets: the ratio to {reference}."


def _names(results, key):
    """The names under `key` in any of `results`, in order of appearance."""
    return list(dict.fromkeys(name for r in results for name in r.get(key, {})))


def ratio_table(results, key):
    """Paired ratios: median [95% interval] per backend."""
    lines = [
        "| ratio | " + " | ".join(r["backend"] for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for name in results[0][key]:
        cells = [
            "{:.3f} [{:.3f}, {:.3f}]".format(*r[key][name]) for r in results
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _span(values):
    """`low-high` of `values`, or the one value."""
    values = sorted(values)
    low, high = f"{values[0]:.3f}", f"{values[-1]:.3f}"
    return low if low == high else f"{low}-{high}"


def drop_table(results):
    """bench_keras_cv.py's drop statistics: input and layer by backend."""
    lines = [
        "| input | layer | " + " | ".join(r["backend"] for r in results) + " |",
        "|---|---|" + "---|" * len(results),
    ]

    def cell(rates):
        if rates is None:
            return "not measured"
        dropped = " / ".join(f"{v['dropped']:.3f}" for v in rates.values())
        mean = " / ".join(f"{v['output_mean']:.2f}" for v in rates.values())
        last = list(rates.values())[-1]
        return (f"{dropped} (mean {mean}; never dropped: {last['rows_never_dropped']} rows, "
                f"{last['cols_never_dropped']} cols)")

    for shape in _names(results, "drop_statistics"):
        layers = dict.fromkeys(
            name for r in results for name in r["drop_statistics"].get(shape, {}))
        for layer in layers:
            cells = [cell(r["drop_statistics"].get(shape, {}).get(layer)) for r in results]
            lines.append(f"| {shape} | {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes_list(results):
    """bench_keras_cv.py's notes, one item per backend and note."""
    return "\n".join(
        f"- {r['backend']}: {note}" for r in results for note in r["notes"]
    ) or "- (none)"


def _sections(text):
    """`(preamble, [(key, section text)])`: `text` split at its `## ` headings;
    a section's key is its heading up to the first " (" (the title without
    the script and date in brackets)."""
    parts = ("\n" + text).split("\n## ")
    sections = []
    for part in parts[1:]:
        title = part.split("\n", 1)[0]
        sections.append((title.split(" (", 1)[0].strip(), "## " + part.rstrip("\n") + "\n"))
    return parts[0].lstrip("\n"), sections


def merged(existing, generated):
    """`generated` (this run's document) merged into `existing` (RESULTS.md as
    it is): a section this run generates replaces the section of the same
    title where it stands; every other section (written by hand: "Magnitude
    pruning", "Reading these numbers", ...) is kept where it is; a generated
    section the file lacks goes before "Reading these numbers" (or at the end).
    """
    preamble, new = _sections(generated)
    _, old = _sections(existing)
    by_key = dict(new)
    missing = [text for key, text in new if key not in {k for k, _ in old}]
    out = []
    for key, text in old:
        if key == NOTES[len("## "):]:
            out, missing = out + missing, []
        out.append(by_key.get(key, text))
    out += missing
    return preamble.rstrip("\n") + "\n\n" + "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", default="7")
    parser.add_argument("--steps", default="30")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the results a previous, interrupted run saved")
    args = parser.parse_args()
    global RESUME
    RESUME = args.resume
    if not RESUME and os.path.exists(PARTIAL):
        os.remove(PARTIAL)
    flags = ["--reps", args.reps, "--steps", args.steps]
    regularizers = [run("bench_regularizers.py", b, flags) for b in BACKENDS]
    cnn = [run("bench_regularizers.py", b, flags + ["--model", "cnn"]) for b in BACKENDS]
    dropout = [run("bench_dropout.py", b, flags) for b in BACKENDS]
    keras_cv = [run("bench_keras_cv.py", b, flags) for b in BACKENDS]
    sparsity = [run("bench_sparsity.py", b, flags) for b in BACKENDS]
    scheduler = [run("bench_scheduler.py", b, flags + ["--size", size])
                 for size in ("48", "500") for b in BACKENDS]
    decay = [run("bench_weight_decay.py", b, flags) for b in BACKENDS]
    sizes = [run("bench_schedule_size.py", b, flags) for b in BACKENDS]
    imports = [run("bench_import.py", b, ["--reps", args.reps]) for b in BACKENDS]
    versions = subprocess.run(
        [sys.executable, "-c",
         "import keras, numpy, jax, torch, tensorflow as tf; print(f'keras {keras.__version__}, "
         "tensorflow {tf.__version__}, jax {jax.__version__}, torch {torch.__version__}, "
         "numpy {numpy.__version__}')"],
        capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="jax"),
    ).stdout.strip()
    sparsity_rows = "\n".join(
        f"| {r['backend']} | {r['epoch_ms']['none']:.1f} ms | {r['epoch_ms']['monitor']:.1f} ms | "
        f"{r['ratio_monitor_to_none']:.3f} | {r['measure_ms']:.2f} ms | "
        f"{100 * r['measure_fraction_of_epoch']:.2f}% | {r['scan_GB_per_s']:.2f} / "
        f"{r['copy_GB_per_s']:.2f} GB/s |"
        for r in sparsity
    )
    scheduler_rows = "\n".join(
        f"| {r['backend']} | {r['objects']} | {r['median_ms']['constant']:.2f} ms | "
        + " | ".join(
            f"{r['ratio_to_constant'][c][0]:.3f} [{r['ratio_to_constant'][c][1]:.3f}, "
            f"{r['ratio_to_constant'][c][2]:.3f}] ({r['variables'][c]} variables, "
            f"{r['scheduler_us_per_step'][c]:.0f} us a step, "
            f"{r['scheduler_ms_per_fit'][c]:.1f} ms a fit)"
            for c in ("scheduled", "scheduled, a schedule per object")
        ) + " |"
        for r in scheduler
    )
    decay_rows = "\n".join(
        f"| {r['backend']} | {r['median_ms']['keras AdamW']:.2f} ms | "
        + " | ".join(
            "{:.3f} [{:.3f}, {:.3f}]".format(*r["ratio_to_keras"][c])
            for c in ("keras AdamW (control)", "kr float", "kr cosine")
        ) + " |"
        for r in decay
    )
    floor_rows = "\n".join(
        f"| {r['backend']} | {r['median_ms']['none']:.2f} ms | "
        + " | ".join(f"{r['added_ms'][k]:+.2f} ms" for k in ("floor", "keras L1L2", "kr ElasticNet"))
        + " | {:.3f} [{:.3f}, {:.3f}] |".format(*r["ratios"]["kr ElasticNet / keras L1L2"])
        for r in regularizers
    )
    size_rows = "\n".join(
        f"| {rows[0]['schedule']} | {rows[0]['n']} | {_span(r['build_s'] for r in rows)} | "
        + " / ".join(f"{r['value_at_us']:.1f}" for r in rows) + " | "
        + " / ".join(f"{r['step_ms']:.2f}" for r in rows) + " |"
        for rows in zip(*(r["sizes"] for r in sizes))
    )
    keras_cv_tables = table(keras_cv, "compiled_ms", "compiled_ratio_to_keras_dropout",
                            "keras.layers.Dropout (paired, median [95% interval])")
    eager = [r for r in keras_cv if "eager_ms" in r]
    if eager:
        keras_cv_tables += "\n\nRun eagerly (`run_eagerly=True`):\n\n" + table(
            eager, "eager_ms", "eager_ratio_to_keras_dropout",
            "keras.layers.Dropout (paired, median [95% interval])")
    import_rows = "\n".join(
        f"| {r['backend']} | {r['median_ms']['keras']:.0f} ms | "
        f"{r['median_ms']['keras + keras_regx']:.0f} ms | {r['added_ms']:+.0f} ms |"
        for r in imports
    )
    text = f"""# Benchmark results

Machine: {regularizers[0]['machine']}, Python {platform.python_version()}, {versions}.
Date: {datetime.date.today().isoformat()}. Command: `python benchmarks/run_all.py --reps {args.reps} --steps {args.steps}`.
Every figure is a median of seconds per training step of `fit()` over {args.steps} steps,
{args.reps} interleaved repetitions, all configurations of a table in one process.

## Regularizer step time (`bench_regularizers.py`)

24 Dense layers of 256 units + a Dense(1) head, batch 64, SGD, kernel and bias
regularized. Scheduled configurations (a ramp) and the proximal one run with
`RegularizationDriver(update_freq="batch")`, whose cost is included.
"keras L2 (control)" is a second Keras L2 model, built separately: the
distance of its ratio from 1 is this run's noise. "floor": see "What is left
to gain" below.

{table(regularizers, "median_ms", "ratio_to_none", "no regularization")}

Paired ratios: in each repetition the two configurations ran within seconds
of each other; the median of the per-repetition ratios, and in brackets its
distribution-free 95% confidence interval (order statistics of the
{args.reps} ratios).

{ratio_table(regularizers, "ratios")}

### What is left to gain (`bench_regularizers.py`, "floor")

The same MLP and run; the time each regularizer adds to the unregularized step.
"floor" is a regularizer whose penalty is one weight entry times 0: it costs
nothing to compute but, like every regularizer, sends a gradient into each
weight, so what it adds is Keras collecting the losses plus the gradient
sums, which no penalty avoids.

| backend | no regularizer | floor adds | keras L1L2 adds | kr ElasticNet adds | kr ElasticNet / keras L1L2 |
|---|---|---|---|---|---|
{floor_rows}

### Residual CNN (`bench_regularizers.py --model cnn`)

16x16x3 inputs, batch 32: a Conv2D(16) stem, three residual blocks of two 3x3
Conv2D(16) with BatchNormalization, global average pooling, Dense(10); every
kernel and bias regularized, SGD. Same configurations.

{table(cnn, "median_ms", "ratio_to_none", "no regularization")}

{ratio_table(cnn, "ratios")}

## Dropout layers (`bench_dropout.py`)

Activations: Conv2D(32) -> drop -> Conv2D(32) -> drop -> pooling -> Dense(10),
inputs 32x32x32, batch 32, rate {0.1} (scheduled: a ramp 0 -> 0.2).

{table(dropout, "activations_ms", "activations_ratio", "keras.layers.Dropout (paired, median [95% interval])")}

Weights: three Dense(512) with Dropout(0.3) after each, against three
DropConnectDense(512, rate=0.3), batch 128.

{table(dropout, "weights_ms", "weights_ratio", "Dense + keras.layers.Dropout (paired, median [95% interval])")}

### DropBlock2D against keras-cv's (`bench_keras_cv.py`)

The activation model with `kr.layers.DropBlock2D(0.1, block_size=5)`, keras-cv's
`DropBlock2D(rate=0.1, block_size=5)` where it imports, runs and trains, and a
second Keras Dropout model as the control; compiled `fit()`, and eager `fit()`
where keras-cv's layer runs only eagerly.

{keras_cv_tables}

The fraction each layer drops (ones in, 5 seeded calls with `training=True`,
block_size 5) at rates 0.1 / 0.3, the mean output (1.0 keeps the input's
mean), and the rows and columns no call dropped at rate 0.3:

{drop_table(keras_cv)}

keras-cv: {", ".join(f"{r['backend']} {r['keras_cv'] or 'not imported'}" for r in keras_cv)}. Notes:

{notes_list(keras_cv)}

## SparsityMonitor (`bench_sparsity.py`)

The regularizer benchmark's MLP (no regularization), one epoch of {args.steps} steps
with and without `SparsityMonitor()` (`update_freq="epoch"`), interleaved; one
measurement alone (median of 200 calls, as a share of the epoch); the scan's
throughput against a plain device copy of the same weights.

| backend | epoch | epoch with monitor | ratio | one measurement | share of epoch | scan / copy |
|---|---|---|---|---|---|---|
{sparsity_rows}

## The scheduler's cost by number of objects (`bench_scheduler.py`)

One `kr.ElasticNet` per kernel and bias (48 objects: 24 Dense of 256; 500:
250 Dense of 32; batch 64), scheduled strengths that change at every step,
`RegularizationDriver(update_freq="batch")`. Step time paired with the same
model at constant strengths (median [95% interval] over {args.reps} repetitions);
in brackets the model's scheduled variables and the scheduler's host work
timed alone (per step: its batch hooks; per fit: its `on_train_begin`).

| backend | objects | constant step | scheduled, one schedule object | a schedule object per regularizer |
|---|---|---|---|---|
{scheduler_rows}

## Scheduled weight decay (`bench_weight_decay.py`)

The 24-layer MLP with Adam and decoupled weight decay, paired ratios to
`keras.optimizers.AdamW(1e-3, weight_decay=0.004)` (median [95% interval]).

| backend | AdamW step | AdamW (control) | `ScheduledWeightDecay(Adam, 0.004)` | `ScheduledWeightDecay(Adam, Cosine)` |
|---|---|---|---|---|
{decay_rows}

## Schedule size (`bench_schedule_size.py`)

`PiecewiseConstant` with n boundaries and `Join` of n parts: the time to
build it, its host evaluation (`value_at`, what the scheduler does each step)
and the median `fit()` step of a `Dense(1)` model on 8 inputs, batch 4,
whose L2 strength follows it.

| schedule | n | build (s) | value_at (us), {" / ".join(r["backend"] for r in sizes)} | fit step (ms), {" / ".join(r["backend"] for r in sizes)} |
|---|---|---|---|---|
{size_rows}

## Import time (`bench_import.py`)

Fresh processes, median wall time of {args.reps}.

| backend | `import keras` | `import keras, keras_regx` | added |
|---|---|---|---|
{import_rows}

"""
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            text = merged(f.read(), text)
    with open(RESULTS, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
