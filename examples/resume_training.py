"""Resuming training mid-schedule: save a .keras file, load it in a new process, go on.

Trains a digits MLP (scikit-learn's bundled `load_digits`, no download) whose
`kr.ElasticNet` strength warms up and then decays along a cosine, and whose
`kr.layers.ScheduledDropout` rate ramps up, both driven by
`kr.callbacks.RegularizationDriver` inside `fit()`. It is trained twice
from the same initial weights, with `shuffle=False` and seeded dropout:

- uninterrupted: all epochs in this process;
- interrupted: the first half of the epochs here, then `model.save(...)` to a
  `.keras` file. A fresh Python process (this script again, `--resume`, same
  `KERAS_BACKEND`) does `import keras_regx` and
  `keras.models.load_model(path)` (default `safe_mode=True`, no
  `custom_objects`), calls `fit(initial_epoch=half, epochs=all)` with a new
  `RegularizationDriver`, and saves the result.

Prints the strength and rate logged at the end of each epoch by both runs,
then how far apart the two final models are.

    KERAS_BACKEND=jax python examples/resume_training.py [--epochs 20] [--dir DIR] [--fast]

Output on this machine (2-core CPU, JAX backend, 2026-11-26), defaults:

    digits: 1347 train / 450 test images, 20 epochs of 22 steps, saved after epoch 10
    fresh process loaded the optimizer at step 220
                      uninterrupted       saved, then resumed
    epoch       enet/l1   drop/rate       enet/l1   drop/rate  process
    1         2.386e-04      0.0143     2.386e-04      0.0143  first
    2         4.886e-04      0.0293     4.886e-04      0.0293  first
    ...
    9         7.837e-04      0.1343     7.837e-04      0.1343  first
    10        6.985e-04      0.1493     6.985e-04      0.1493  first
    11        6.059e-04      0.1643     6.059e-04      0.1643  fresh
    12        5.094e-04      0.1793     5.094e-04      0.1793  fresh
    ...
    19        2.039e-05      0.2843     2.039e-05      0.2843  fresh
    20        1.002e-05      0.2993     1.002e-05      0.2993  fresh
    test accuracy: uninterrupted 0.960, resumed 0.960
    final weights: max |difference| 0.00e+00 (largest |weight| 0.59); strengths and seed state: max |difference| 0.00e+00
    time: uninterrupted 13.9 s, interrupted 24.7 s (the second process's imports included)

Every logged value agrees, and the final weights are bitwise equal (the
`--fast` run gives a difference of 0 on TensorFlow, JAX and PyTorch too).

The loaded model carries everything the schedules need: the schedules
themselves (in the layer and regularizer configs), the current strength and
rate (variables of the model), the optimizer's update count (the step the
schedules are evaluated at; saved with the optimizer) and the dropout layer's
seed generator state. The new `RegularizationDriver` reads the update
count at the first epoch start and sets every schedule there, so the second
process logs the values the uninterrupted run logged, and trains to the same
weights.

About 50 s on two CPU cores (JAX), the second process's imports included;
`--fast` (4 epochs on 256 images, the smoke test in tests/test_examples.py)
trains in 15 to 25 s, most of it the second process's imports and compiling.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_regx as kr

KEYS = ("enet/l1", "drop/rate")  # what RegularizationDriver logs
# A smoke test in seconds: a subset of the training images, few epochs.
# 256 images: 4 full batches per epoch, no smaller last batch to compile for.
FAST = dict(epochs=4, train_size=256)


def load_data(train_size=None, seed=0):
    """Digits scaled to [0, 1], a fixed stratified 75/25 split, `train_size` kept."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        (x / 16.0).astype("float32"), y.astype("int32"), test_size=0.25,
        random_state=seed, stratify=y)
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    return x_train, y_train, x_test, y_test


def build_model(total_steps, seed=0):
    """The MLP with a scheduled ElasticNet strength and dropout rate, compiled."""
    keras.utils.set_random_seed(seed)  # the same initial weights in both runs
    warmup = max(total_steps // 5, 1)
    strength = kr.schedules.Join(
        [kr.schedules.Linear(0.0, 1e-3, end_step=warmup),
         kr.schedules.Cosine(1e-3, 1e-5, end_step=max(total_steps - warmup, 1))],
        boundaries=[warmup])
    rate = kr.schedules.Linear(0.0, 0.3, end_step=total_steps)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu", name="hidden",
                           kernel_regularizer=kr.ElasticNet(l1=strength, l2=1e-4, name="enet")),
        kr.layers.ScheduledDropout(rate, seed=seed, name="drop"),
        keras.layers.Dense(10, activation="softmax", name="head"),
    ])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train(model, x, y, batch_size, epochs, initial_epoch=0):
    """`fit()` in a fixed batch order; returns the logged values per epoch."""
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs,
                        initial_epoch=initial_epoch, shuffle=False, verbose=0,
                        callbacks=[kr.callbacks.RegularizationDriver()])
    return {key: [float(v) for v in history.history[key]] for key in KEYS}


def resume(path, out, initial_epoch, epochs, batch_size, train_size, seed):
    """The second process: loads `path`, trains on, saves `out`, prints JSON."""
    model = keras.models.load_model(path)  # safe_mode=True, no custom_objects
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    x_train, y_train, _, _ = load_data(train_size, seed)
    logged = train(model, x_train, y_train, batch_size, epochs, initial_epoch)
    model.save(out)
    print(json.dumps({"steps_at_load": steps, "logged": logged}))


def run_resume(path, out, initial_epoch, epochs, batch_size, train_size, seed):
    """Runs `resume` in a fresh Python process on this backend."""
    command = [sys.executable, os.path.abspath(__file__), "--resume", path, "--save", out,
               "--initial-epoch", str(initial_epoch), "--epochs", str(epochs),
               "--batch-size", str(batch_size), "--seed", str(seed)]
    if train_size is not None:
        command += ["--train-size", str(train_size)]
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"The resuming process failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def accuracy(model, x, y):
    # A plain call, not `evaluate()`: the loss would add the penalty at a
    # strength no scheduler drives outside `fit()`, which warns.
    predicted = np.argmax(keras.ops.convert_to_numpy(model(x, training=False)), axis=-1)
    return float(np.mean(predicted == y))


def main(epochs=20, batch_size=64, train_size=None, directory=None, seed=0, verbose=True):
    """Trains uninterrupted and interrupted halfway; returns a dict.

    `uninterrupted`: the values of `KEYS` logged at each epoch end of the
    uninterrupted run; `first_half` and `second_half`: those of the
    interrupted run, before saving and in the fresh process;
    `steps_at_load`: the optimizer's update count the fresh process loaded,
    `steps_per_epoch`; `max_weight_difference`: the largest absolute
    difference between the two final models' trainable weights, `max_weight`:
    the largest absolute trainable weight; `max_state_difference`: the same
    for the non-trainable state (the current strength and rate, the dropout
    seed generator); `accuracy`: test accuracy of both final models, keyed
    `uninterrupted` and `interrupted`.
    """
    x_train, y_train, x_test, y_test = load_data(train_size, seed)
    steps_per_epoch = -(-len(x_train) // batch_size)
    half = epochs // 2
    directory = directory or tempfile.mkdtemp(prefix="resume_training_")
    middle = os.path.join(directory, "middle.keras")
    final = os.path.join(directory, "resumed.keras")
    if verbose:
        print(f"backend: {keras.backend.backend()}, keras_regx {kr.__version__}")
        print(f"digits: {len(x_train)} train / {len(x_test)} test images, {epochs} epochs "
              f"of {steps_per_epoch} steps, saved after epoch {half}")

    start = time.perf_counter()
    model = build_model(epochs * steps_per_epoch, seed)
    uninterrupted = train(model, x_train, y_train, batch_size, epochs)
    seconds = time.perf_counter() - start

    start = time.perf_counter()
    interrupted = build_model(epochs * steps_per_epoch, seed)
    first_half = train(interrupted, x_train, y_train, batch_size, half)
    interrupted.save(middle)
    resumed = run_resume(middle, final, half, epochs, batch_size, train_size, seed)
    seconds_resumed = time.perf_counter() - start
    second_half = resumed["logged"]

    loaded = keras.models.load_model(final)
    difference = max_difference(model.trainable_weights, loaded.trainable_weights)
    result = {
        "uninterrupted": uninterrupted,
        "first_half": first_half,
        "second_half": second_half,
        "steps_at_load": resumed["steps_at_load"],
        "steps_per_epoch": steps_per_epoch,
        "max_weight_difference": difference,
        "max_weight": max(float(np.max(np.abs(numpy(w)))) for w in model.trainable_weights),
        "max_state_difference": max_difference(state(model), state(loaded)),
        "accuracy": {"uninterrupted": accuracy(model, x_test, y_test),
                     "interrupted": accuracy(loaded, x_test, y_test)},
    }
    if verbose:
        print(f"fresh process loaded the optimizer at step {result['steps_at_load']}")
        print(f"{'':7}{'uninterrupted':>24}{'saved, then resumed':>26}")
        print(f"{'epoch':<7}{'enet/l1':>12}{'drop/rate':>12}{'enet/l1':>14}{'drop/rate':>12}"
              "  process")
        for e in range(epochs):
            run, where = (first_half, "first") if e < half else (second_half, "fresh")
            i = e if e < half else e - half
            print(f"{e + 1:<7}{uninterrupted['enet/l1'][e]:12.3e}"
                  f"{uninterrupted['drop/rate'][e]:12.4f}{run['enet/l1'][i]:14.3e}"
                  f"{run['drop/rate'][i]:12.4f}  {where}")
        print(f"test accuracy: uninterrupted {result['accuracy']['uninterrupted']:.3f}, "
              f"resumed {result['accuracy']['interrupted']:.3f}")
        print(f"final weights: max |difference| {difference:.2e} "
              f"(largest |weight| {result['max_weight']:.2f}); strengths and seed "
              f"state: max |difference| {result['max_state_difference']:.2e}")
        print(f"time: uninterrupted {seconds:.1f} s, interrupted {seconds_resumed:.1f} s "
              "(the second process's imports included)")
    return result


def numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype="float64")


def state(model):
    """The non-trainable state: the current strength and rate, the dropout seed."""
    return model.non_trainable_weights + [model.get_layer("drop").seed_generator.state]


def max_difference(variables, others):
    """The largest absolute difference between two lists of matching variables."""
    assert [v.shape for v in variables] == [v.shape for v in others]
    return max(float(np.max(np.abs(numpy(a) - numpy(b)))) for a, b in zip(variables, others))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dir", default=None, help="where the .keras files go")
    parser.add_argument("--fast", action="store_true",
                        help="few epochs on a subset of the images (a smoke test)")
    # The second process's arguments (set by `run_resume`).
    parser.add_argument("--resume", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--initial-epoch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--train-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.resume is not None:
        resume(args.resume, args.save, args.initial_epoch, args.epochs, args.batch_size,
               args.train_size, args.seed)
    elif args.fast:
        main(directory=args.dir, **FAST)
    else:
        main(epochs=args.epochs, directory=args.dir)
