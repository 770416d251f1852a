"""Concrete dropout learns less dropout from more data (Gal et al. 2017, section 5.1).

The paper's synthetic experiment: y = 2x + 8 + N(0, 1) with x ~ N(0, 1), a
network of ConcreteDropout-wrapped Dense layers trained on N points with
`weight_regularizer = l**2 / N` and `dropout_regularizer = 2 / N`, the same
number of optimizer steps for every N. Prints the learned drop rate of each
layer, and the Monte Carlo predictive mean's RMSE against the true line and
its spread, on held-out x. The rates of the layers that drop hidden units
fall as N grows, and so does the spread: less data, more uncertainty.

Smaller than the paper's run, to fit a CPU: 128 units instead of 1024, the
mean squared error (the noise variance, 1, is known) instead of a learned
heteroscedastic variance, one repetition, and Adam with a cosine-decayed
learning rate. About two minutes on two CPU cores; `--fast` takes seconds.

    KERAS_BACKEND=jax python examples/concrete_dropout.py [--sizes 10 100 1000] [--steps N] [--fast]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr
import keras_regx.uncertainty  # noqa: F401  (kr.uncertainty.mc_predict)

SIZES = (10, 25, 50, 100, 1000, 10000)  # the paper's data set sizes
# A smoke test in seconds: two sizes, a small network, few steps.
FAST = dict(sizes=(10, 1000), steps=120, units=32, hidden_layers=2, batch_size=32,
            learning_rate=6e-2, length_scale=1e-2)


def make_data(n, rng):
    x = rng.normal(size=(n, 1)).astype("float32")
    y = (2 * x + 8 + rng.normal(size=(n, 1))).astype("float32")
    return x, y


def build_model(n, units, hidden_layers, length_scale, seed):
    def wrap(layer, i):
        return kr.layers.ConcreteDropout(
            layer,
            weight_regularizer=length_scale**2 / n,
            dropout_regularizer=2 / n,  # mean squared error: keep the factor 2
            seed=seed * 100 + i,
            name=f"concrete_{i}",
        )

    layers = [keras.Input((1,))]
    layers += [wrap(keras.layers.Dense(units, activation="relu"), i)
               for i in range(hidden_layers)]
    layers.append(wrap(keras.layers.Dense(1), hidden_layers))
    return keras.Sequential(layers)


def main(
    sizes=SIZES,
    steps=1000,
    units=128,
    hidden_layers=3,
    batch_size=20,
    learning_rate=1e-2,
    length_scale=1e-4,
    mc_samples=20,
    seed=0,
    verbose=True,
):
    """Trains one model per data set size; returns a list of result dicts.

    Each dict holds `n`, `rates` (one per wrapped layer, input side first),
    `rmse` (MC mean against the noiseless line 2x + 8) and `spread` (the mean
    MC standard deviation), both on 1000 held-out points.
    """
    if verbose:
        print(f"backend: {keras.backend.backend()}, keras_regx {kr.__version__}")
        print(f"{steps} steps of batch {batch_size} per size, {hidden_layers} hidden "
              f"layers of {units} units, l = {length_scale:g}")
        header = "".join(f"{f'p(layer {i + 1})':>12}" for i in range(hidden_layers))
        print(f"{'N':>6}{header}{'p(output)':>12}{'rmse':>8}{'spread':>8}")
    x_test, _ = make_data(1000, np.random.default_rng(seed + 1))
    results = []
    for n in sizes:
        keras.utils.set_random_seed(seed)
        x, y = make_data(n, np.random.default_rng(seed))
        model = build_model(n, units, hidden_layers, length_scale, seed)
        # Decayed to 0 so that the last iterate, whose rates are read, has settled.
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        model.compile(keras.optimizers.Adam(schedule), "mse")
        # The same number of steps for every N, as one epoch over copies of
        # the data: hundreds of epochs of a few batches cost more in overhead.
        b = min(batch_size, n)
        copies = -(-steps * b // n)
        model.fit(np.tile(x, (copies, 1)), np.tile(y, (copies, 1)),
                  batch_size=b, epochs=1, verbose=0)
        mean, std = kr.uncertainty.mc_predict(model, x_test, samples=mc_samples, batch_size=250)
        result = {
            "n": n,
            "rates": [layer.rate for layer in model.layers],
            "rmse": float(np.sqrt(np.mean((mean - (2 * x_test + 8)) ** 2))),
            "spread": float(std.mean()),
        }
        results.append(result)
        if verbose:
            rates = "".join(f"{r:12.3f}" for r in result["rates"])
            print(f"{n:>6}{rates}{result['rmse']:8.3f}{result['spread']:8.3f}", flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--fast", action="store_true",
                        help="two sizes, a small network, few steps (a smoke test)")
    args = parser.parse_args()
    if args.fast:
        main(**FAST)
    else:
        main(sizes=args.sizes, steps=args.steps, units=args.units)
