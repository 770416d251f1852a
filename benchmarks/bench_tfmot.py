"""keras_regx's pruning against TF Model Optimization's, on the same models and data.

TF Model Optimization (`tensorflow-model-optimization`) runs on tf-keras
(Keras 2) only, so it runs in its own virtual environment; this script runs
itself there (`--side tfmot`) and here (`--side kr`, Keras 3 on the backend of
`KERAS_BACKEND`) and prints one table. Both sides use `PolynomialDecay` with
the same arguments:

- sparsity at each step: the hidden kernel's mask of the digits MLP (64 ->
  256 relu -> 128 relu -> 10), `PolynomialDecay(0.0, 0.8, begin_step=0,
  end_step=100, frequency=10)`, after each of 120 steps;
- test accuracy at 50 / 80 / 90%: the MLP trained dense for `--epochs` epochs
  on 1297 bundled digits, then a pruned copy fine-tuned as long (the target
  reached at half of it), stripped, tested on 500 held-out digits;
- step time: the benchmark MLP of `bench_regularizers.py` (24 Dense layers of
  256, batch 64, Adam), pruned / unpruned step time with masks updated every
  100 steps (`frequency=100`, every kernel) and at every step
  (`frequency=1`), paired ratios with 95% intervals (`_timing`). Both sides
  stay up and their repetitions alternate (each runs while the other waits),
  so each repetition also gives keras_regx's ratio over TF Model
  Optimization's (`kr_ratio_over_tfmot_ratio`: below 1, pruning costs
  keras_regx less of its step).

    python -m venv /tmp/tfmot-venv
    /tmp/tfmot-venv/bin/pip install tensorflow-cpu==2.21.0 "tf-keras~=2.21.0" \\
        tensorflow-model-optimization==0.8.1 scikit-learn
    KERAS_BACKEND=jax python benchmarks/bench_tfmot.py --tfmot-python /tmp/tfmot-venv/bin/python
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TRAJECTORY = {"initial_sparsity": 0.0, "final_sparsity": 0.8, "begin_step": 0,
              "end_step": 100, "frequency": 10}
TRAJECTORY_STEPS = 120
TARGETS = (0.5, 0.8, 0.9)
BATCH = 32
TIME_BATCH, TIME_UNITS, TIME_LAYERS = 64, 256, 24
CONFIGS = {"unpruned": 0, "frequency=100": 100, "frequency=1": 1}  # name: mask update frequency
MARK = "@bench_tfmot "  # starts the lines of the protocol between main and a side


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype("float32")
    y = data.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:-500], y[:-500]), (x[-500:], y[-500:])


def mlp(keras):
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(256, activation="relu", name="hidden1"),
        keras.layers.Dense(128, activation="relu", name="hidden2"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])


def deep_mlp(keras):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((TIME_UNITS,))]
        + [keras.layers.Dense(TIME_UNITS, activation="relu") for _ in range(TIME_LAYERS)]
        + [keras.layers.Dense(1)]
    )


class Framework:
    """What differs between the two sides: building, pruning, stripping, masks."""

    def __init__(self, side):
        self.side = side
        if side == "tfmot":
            import tensorflow_model_optimization as tfmot
            import tf_keras as keras

            self.tfmot = tfmot
        else:
            import keras

            import keras_regx as kr

            self.kr = kr
        self.keras = keras

    def schedule(self, **arguments):
        if self.side == "tfmot":
            return self.tfmot.sparsity.keras.PolynomialDecay(**arguments)
        return self.kr.pruning.PolynomialDecay(**arguments)

    def prune(self, model, schedule):
        if self.side == "tfmot":
            return self.tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
        return self.kr.pruning.prune(model, schedule)

    def callbacks(self):
        if self.side == "tfmot":
            return [self.tfmot.sparsity.keras.UpdatePruningStep()]
        return [self.kr.callbacks.RegularizationDriver()]

    def strip(self, model):
        if self.side == "tfmot":
            return self.tfmot.sparsity.keras.strip_pruning(model)
        return self.kr.pruning.strip(model)

    def hidden_mask(self, model):
        if self.side == "tfmot":
            layer = model.layers[0]  # the PruneLowMagnitude wrapper of hidden1
            return np.asarray(layer.pruning_vars[0][1].numpy())
        constraint = model.get_layer("hidden1").kernel_constraint
        return np.asarray(self.keras.ops.convert_to_numpy(constraint.mask))

    def version(self):
        if self.side == "tfmot":
            import tensorflow_model_optimization as tfmot

            return f"tf-keras {self.keras.__version__}, tfmot {tfmot.__version__}"
        return f"keras {self.keras.__version__} ({self.keras.backend.backend()}), keras_regx"


def trajectory(fw):
    (x, y), _ = digits()
    model = fw.prune(mlp(fw.keras), fw.schedule(**TRAJECTORY))
    model.compile(fw.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    seen = []

    class Masks(fw.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # `self.model`: on JAX it syncs the running state into the variables.
            seen.append(float((fw.hidden_mask(self.model) == 0).mean()))

    epochs = -(-TRAJECTORY_STEPS * BATCH // len(x))
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False,
              callbacks=fw.callbacks() + [Masks()])
    return seen[:TRAJECTORY_STEPS]


def accuracies(fw, epochs):
    (x, y), (x_test, y_test) = digits()
    base = mlp(fw.keras)
    base.compile(fw.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    base.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0)
    steps = epochs * -(-len(x) // BATCH)
    result = {}
    dense = fw.keras.models.clone_model(base)
    dense.set_weights(base.get_weights())
    for target in (0.0,) + TARGETS:
        if target == 0.0:
            model = dense
        else:
            model = fw.keras.models.clone_model(base)
            model.set_weights(base.get_weights())
            model = fw.prune(model, fw.schedule(initial_sparsity=0.0, final_sparsity=target,
                                                begin_step=0, end_step=steps // 2, frequency=10))
        model.compile(fw.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
                  callbacks=fw.callbacks() if target else [])
        final = fw.strip(model) if target else model
        final.compile(fw.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        result[str(target)] = float(final.evaluate(x_test, y_test, verbose=0)[1])
    return result


def step_fits(fw, reps, steps):
    """A function per configuration that runs one epoch (`steps` steps) of
    `fit()` of its model, each called once (compiled, warm)."""
    keras = fw.keras
    rng = np.random.default_rng(0)
    x = rng.normal(size=(TIME_BATCH * steps, TIME_UNITS)).astype("float32")
    y = rng.normal(size=(TIME_BATCH * steps, 1)).astype("float32")
    total = (reps + 1) * steps

    def build(frequency):
        model = deep_mlp(keras)
        if frequency:
            model = fw.prune(model, fw.schedule(initial_sparsity=0.0, final_sparsity=0.8,
                                                begin_step=0, end_step=total, frequency=frequency))
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        return model

    def fit(frequency):
        model = build(frequency)
        callbacks = fw.callbacks() if frequency else []
        return lambda: model.fit(x, y, batch_size=TIME_BATCH, epochs=1, verbose=0,
                                 shuffle=False, callbacks=callbacks)

    fits = {name: fit(frequency) for name, frequency in CONFIGS.items()}
    for run in fits.values():
        run()
    return fits


def _say(value):
    """A line of the protocol between `main` and a side (any other output of
    the libraries goes to stderr or is skipped)."""
    print(MARK + json.dumps(value), flush=True)


def serve(side, reps, steps, epochs):
    """One side: its trajectory and accuracies, then one repetition of the
    step timing (every configuration once, in a new order) for each "rep"
    line `main` sends, so that the two sides' repetitions alternate."""
    sys.path.insert(0, HERE)
    from _timing import repetition

    fw = Framework(side)
    _say({"side": side, "version": fw.version(), "trajectory": trajectory(fw),
          "accuracy": accuracies(fw, epochs)})
    fits = step_fits(fw, reps, steps)
    _say("ready")
    order = random.Random(0)
    for line in sys.stdin:
        if line.strip() != "rep":
            break
        _say({name: seconds / steps for name, seconds in repetition(fits, order).items()})


class Side:
    """A side running in its own process, answering `main`'s requests."""

    def __init__(self, side, python, arguments):
        self.side = side
        env = dict(os.environ)
        if side == "tfmot":
            env.pop("KERAS_BACKEND", None)
        self.errors = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [python, __file__, "--side", side] + arguments, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)

    def read(self):
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        self.errors.seek(0)
        sys.exit(f"side {self.side} ended:\n{self.errors.read()[-3000:]}")

    def ask(self, request):
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def main(tfmot_python, reps, steps, epochs):
    sys.path.insert(0, HERE)
    from _timing import median_interval
    from _timing import paired_ratio

    arguments = ["--reps", str(reps), "--steps", str(steps), "--epochs", str(epochs)]
    sides, found = {}, {}
    for side, python in (("tfmot", tfmot_python), ("kr", sys.executable)):
        # One at a time: a side trains and warms up while the other waits.
        sides[side] = Side(side, python, arguments)
        found[side] = sides[side].read()
        sides[side].read()  # "ready"
    times = {side: {name: [] for name in CONFIGS} for side in sides}
    order = random.Random(0)
    for _ in range(reps):
        names = list(sides)
        order.shuffle(names)
        for side in names:
            for name, seconds in sides[side].ask("rep").items():
                times[side][name].append(seconds)
    for side in sides.values():
        side.close()
    tfmot, kr = found["tfmot"], found["kr"]
    same = [a == b for a, b in zip(tfmot["trajectory"], kr["trajectory"])]

    def own(side):
        return {"unpruned_ms": round(float(np.median(times[side]["unpruned"])) * 1e3, 3),
                "ratio": {name: paired_ratio(times[side], name, "unpruned")
                          for name in CONFIGS if name != "unpruned"}}

    def against_tfmot(name):
        # Each repetition's keras_regx ratio over TF Model Optimization's
        # ratio in the same repetition.
        ratios = [(a / b) / (c / d) for a, b, c, d in zip(
            times["kr"][name], times["kr"]["unpruned"],
            times["tfmot"][name], times["tfmot"]["unpruned"])]
        return [round(v, 3) for v in median_interval(ratios)]

    result = {
        "versions": {"tfmot": tfmot["version"], "kr": kr["version"]},
        "reps": reps,
        "steps": steps,
        "steps_with_identical_sparsity": f"{sum(same)}/{len(same)}",
        "sparsity_at": {s: [tfmot["trajectory"][s], kr["trajectory"][s]]
                        for s in (0, 10, 20, 50, 100, 119)},
        "accuracy": {t: [tfmot["accuracy"][t], kr["accuracy"][t]] for t in tfmot["accuracy"]},
        "step_time": {"tfmot": own("tfmot"), "kr": own("kr")},
        "kr_ratio_over_tfmot_ratio": {name: against_tfmot(name) for name in CONFIGS
                                      if name != "unpruned"},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfmot-python", help="the Python of a venv with tf-keras and tfmot")
    parser.add_argument("--side", choices=["tfmot", "kr"])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    if args.side:
        serve(args.side, args.reps, args.steps, args.epochs)
    else:
        if not args.tfmot_python:
            parser.error("--tfmot-python is needed (or --side)")
        main(args.tfmot_python, args.reps, args.steps, args.epochs)
