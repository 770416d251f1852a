"""Proximal L1 against Keras' L1 on the same model: exact zeros against near-zeros.

Trains one small MLP (64 -> 64 relu -> 10 softmax) on scikit-learn's bundled
digits (1797 8x8 images, no download; inputs standardized, a fixed 75/25
split) three times, with the same initial weights, batches, epochs and Adam
settings: without a penalty, with `keras.regularizers.L1(l1)` on both kernels,
and with `kr.L1(l1, proximal=True)`. `kr.callbacks.SparsityMonitor(threshold=0.0)`
logs the fraction of kernel weights that are exactly zero at each epoch end;
`kr.sparsity` counts the near-zeros, `abs(w) <= 1e-3`. Prints one line per
run and saves both fractions per epoch, all runs in one panel drawn by
`kr.plotting.plot_history`, to `--out`.

    KERAS_BACKEND=jax python examples/exact_sparsity.py [--l1 3e-3] [--epochs 100] [--out exact_sparsity.png] [--fast]

Output on this machine (2-core CPU, JAX backend, 2026-11-26), defaults:

    digits: 1347 train / 450 test images, 100 epochs of batch 32, Adam(0.001), l1 = 0.003
    config        test acc   exact 0  |w|<=1e-3  time (s)
    none             0.976     0.000      0.005       6.7
    keras_l1         0.973     0.000      0.802       5.5
    proximal_l1      0.976     0.849      0.897       6.0

(time: wall time of `fit()`, compilation included.) Both penalties bring most
weights to or near zero at about the test accuracy of the unpenalized model,
but only the proximal one leaves exact zeros. Keras adds `l1 * sign(w)` to the
gradient, so a weight the data does not need is pushed across zero at every
step and oscillates around it, small but almost never exactly 0. With
`proximal=True` the L1 term leaves the gradient; after each optimizer update
the weight is soft-thresholded, `w <- sign(w) * max(abs(w) - l1 * step, 0)`,
with `step` the step the optimizer took on that coordinate (for Adam, the
learning rate over the root of the coordinate's second-moment estimate). A
weight the update leaves within `l1 * step` of zero becomes exactly 0, and it
stays 0 while the data's (averaged) gradient on it is below `l1` in size.
`RegularizationDriver` installs this step; without it a warning says the
penalty is not applied. Exact zeros can be pruned or stored sparsely without
changing the model's outputs; near-zeros cannot.

About half a minute on two CPU cores; `--fast` (3 epochs on 400 images, the
smoke test in tests/test_examples.py) takes seconds past the imports.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import keras_regx as kr

CONFIGS = ("none", "keras_l1", "proximal_l1")
NEAR = 1e-3  # |w| <= NEAR counts as a near-zero
# A smoke test in seconds: a subset of the training images, few epochs.
FAST = dict(epochs=3, train_size=400)


def load_data(seed=0, train_size=None):
    """Standardized digits: a fixed stratified 75/25 split, `train_size` kept."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y
    )
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    scaler = StandardScaler().fit(x_train)  # constant pixels keep scale 1
    return (
        scaler.transform(x_train).astype("float32"), y_train,
        scaler.transform(x_test).astype("float32"), y_test,
    )


def regularizer(config, l1):
    if config == "keras_l1":
        return keras.regularizers.L1(l1)
    if config == "proximal_l1":
        return kr.L1(l1, proximal=True)
    return None


def build_model(config, l1, units):
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(units, activation="relu",
                               kernel_regularizer=regularizer(config, l1)),
            keras.layers.Dense(10, activation="softmax",
                               kernel_regularizer=regularizer(config, l1)),
        ]
    )


class NearZeros(keras.callbacks.Callback):
    """Logs `near_zeros`, the fraction of kernel weights with `abs(w) <= NEAR`."""

    def on_epoch_end(self, epoch, logs=None):
        figures = kr.sparsity.model_sparsity(self.model, NEAR, per_layer=False)
        logs["near_zeros"] = figures["sparsity"]


def plot(results, l1, out):
    """Saves the per-epoch zero fractions of every run in one panel."""
    # `sparsity/<name>` keys all land in plot_history's sparsity panel
    # ("<run>/sparsity" would read as a scheduled strength); the near-zero
    # line of a run is then redrawn dotted in the colour of its exact-zero line.
    series = {}
    for r in results:
        series[f"sparsity/{r['config']}"] = r["curve"]
        series[f"sparsity/{r['config']}/near"] = r["near_curve"]
    fig = kr.plotting.plot_history(series)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for r in results:
        exact = lines[f"sparsity/{r['config']}"]
        near = lines[f"sparsity/{r['config']}/near"]
        exact.set_label(f"{r['config']}: w = 0")
        near.set(label=f"{r['config']}: |w| <= {NEAR:g}", color=exact.get_color(),
                 linestyle=":")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_title(f"kernel weights at zero (solid) and near zero (dotted), l1 = {l1:g}")
    fig.savefig(out, dpi=100)


def main(
    l1=3e-3,
    epochs=100,
    units=64,
    batch_size=32,
    learning_rate=1e-3,
    train_size=None,
    out="exact_sparsity.png",
    seed=0,
    verbose=True,
):
    """Trains the model once per entry of `CONFIGS`; returns a list of result dicts.

    Each dict holds `config`, `accuracy` (on the test images), `exact` (the
    fraction of kernel weights that are 0, as `SparsityMonitor` logged it at
    the last epoch), `near` (the fraction with `abs(w) <= 1e-3`), `seconds`
    (the wall time of `fit()`), and `curve` and `near_curve` (the exact- and
    near-zero fractions per epoch). The figure is saved to `out`.
    """
    x_train, y_train, x_test, y_test = load_data(seed, train_size)
    if verbose:
        print(f"backend: {keras.backend.backend()}, keras_regx {kr.__version__}")
        print(f"digits: {len(x_train)} train / {len(x_test)} test images, "
              f"{epochs} epochs of batch {batch_size}, Adam({learning_rate:g}), l1 = {l1:g}")
        print(f"{'config':<12}{'test acc':>10}{'exact 0':>10}{'|w|<=1e-3':>11}{'time (s)':>10}")
    results = []
    for config in CONFIGS:
        keras.utils.set_random_seed(seed)  # the same initial weights and batches
        model = build_model(config, l1, units)
        model.compile(keras.optimizers.Adam(learning_rate),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        callbacks = [kr.callbacks.SparsityMonitor(threshold=0.0, per_layer=False),
                     NearZeros()]
        if config == "proximal_l1":
            callbacks.insert(0, kr.callbacks.RegularizationDriver())
        start = time.perf_counter()
        history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                            verbose=0, callbacks=callbacks)
        seconds = time.perf_counter() - start
        accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
        curve = [float(v) for v in history.history["sparsity"]]
        near_curve = [float(v) for v in history.history["near_zeros"]]
        result = {
            "config": config,
            "accuracy": float(accuracy),
            "exact": curve[-1],  # after the last epoch: the trained weights
            "near": near_curve[-1],
            "seconds": seconds,
            "curve": curve,
            "near_curve": near_curve,
        }
        results.append(result)
        if verbose:
            print(f"{config:<12}{result['accuracy']:10.3f}{result['exact']:10.3f}"
                  f"{result['near']:11.3f}{seconds:10.1f}", flush=True)

    plot(results, l1, out)
    if verbose:
        print(f"saved {out}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--l1", type=float, default=3e-3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--out", default="exact_sparsity.png")
    parser.add_argument("--fast", action="store_true",
                        help="few epochs on a subset of the images (a smoke test)")
    args = parser.parse_args()
    if args.fast:
        main(l1=args.l1, out=args.out, **FAST)
    else:
        main(l1=args.l1, epochs=args.epochs, out=args.out)
