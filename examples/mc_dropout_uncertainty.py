"""Monte Carlo dropout: a predictive mean and standard deviation with `kr.uncertainty.mc_predict`.

A 1-D regression with a gap in the inputs: y = f(x) + N(0, 0.2**2) with
f(x) = sin(2x) + 0.5x, training inputs drawn uniformly from [-4, -1] and
[1, 4] (none in the gap (-1, 1)). An MLP (1 -> 128 relu -> MCDropout ->
128 relu -> MCDropout -> 1, Adam, mean squared error) is trained on them;
`kr.layers.MCDropout` keeps dropping at inference, so
`kr.uncertainty.mc_predict(model, x, samples=100)` returns the mean and the
standard deviation of 100 predictions, each with its own dropout masks. The
std is the model's (epistemic) uncertainty; the noise of the data is not in
it, so an interval for a new observation adds the noise variance, estimated
as the mean squared residual of the MC mean on the training data:
`total = sqrt(std**2 + noise**2)`.

Prints, on fresh points of three regions (inside the training ranges, in the
gap, beyond the training ranges in [-6, -4) and (4, 6]): the mean MC std,
the RMSE of the MC mean against f, and the fraction of noisy observations
inside mean +- 2 std and inside mean +- 2 total. Saves the mean +- 2 std and
+- 2 total bands against x, with the training data and f, and the std
against x, to `--out`.

    KERAS_BACKEND=jax python examples/mc_dropout_uncertainty.py [--rate 0.1] [--out mc_dropout_uncertainty.png] [--fast]

Output on this machine (2-core CPU, JAX backend, 2026-11-26), defaults:

    400 training points, 3000 steps of batch 32 (5.6 s), dropout rate 0.1, 100 MC samples
    noise std: true 0.2, estimated 0.196
    region  x                         MC std    rmse  in +-2 std  in +-2 total
    in      [-4, -1] u [1, 4]          0.121   0.072       0.671         0.966
    gap     [-1, 1]                    0.167   0.154       0.818         0.957
    beyond  [-6, -4] u [4, 6]          0.447   3.436       0.064         0.086

Inside the training ranges the MC std alone is too narrow for new
observations (67% within 2 std): it is the spread of the fitted function,
not the noise. With the estimated noise added, 97% of the held-out points lie
within 2 total, near the 95% of a normal. The spread is larger away from the
data: 1.4 times larger in the gap (1.7 times on TensorFlow, 0.215 against
0.123), 3.7 times larger beyond the training ranges. Beyond them it is still
far too small: the network extrapolates almost linearly, far from f (RMSE
3.4), and the band covers 9% of the observations there. MC dropout
uncertainty grows away from the data but is no calibrated error bar outside
it. In the `--fast` run (a network trained less) the gap's spread is below
the training ranges' one; only "beyond > in" held in every fast run measured,
and it is what the test checks.

About 25 s on two CPU cores (JAX and TensorFlow), imports included; `--fast`
(a smaller network, fewer steps and samples, the smoke test in
tests/test_examples.py) takes seconds past the imports.

Reference: Gal & Ghahramani, "Dropout as a Bayesian Approximation:
Representing Model Uncertainty in Deep Learning", ICML 2016.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_regx as kr

NOISE = 0.2  # standard deviation of the observation noise
TRAIN = ((-4.0, -1.0), (1.0, 4.0))  # the training inputs' ranges
REGIONS = {  # where held-out points are drawn
    "in": TRAIN,
    "gap": ((-1.0, 1.0),),
    "beyond": ((-6.0, -4.0), (4.0, 6.0)),
}
# A smoke test in seconds: a small network, few steps and samples.
FAST = dict(n=200, units=32, steps=500, learning_rate=1e-2, samples=30)


def f(x):
    return np.sin(2.0 * x) + 0.5 * x


def sample(ranges, n, rng):
    """`n` inputs uniform over the union of equal-length `ranges`, and noisy targets."""
    low = np.array([a for a, _ in ranges])[rng.integers(len(ranges), size=n)]
    width = ranges[0][1] - ranges[0][0]
    x = (low + width * rng.uniform(size=n)).astype("float32")[:, None]
    y = (f(x) + NOISE * rng.normal(size=x.shape)).astype("float32")
    return x, y


def build_model(units, rate, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(units, activation="relu"),
        kr.layers.MCDropout(rate, seed=seed),
        keras.layers.Dense(units, activation="relu"),
        kr.layers.MCDropout(rate, seed=seed + 1),
        keras.layers.Dense(1),
    ])


def plot(grid, mean, std, noise, x_train, y_train, out):
    """Saves mean +- 2 std (and +- 2 total) against x, and std against x."""
    from matplotlib.figure import Figure  # no pyplot: no GUI, no global state

    grid, mean, std = grid[:, 0], mean[:, 0], std[:, 0]
    total = np.sqrt(std**2 + noise**2)
    fig = Figure(figsize=(8.0, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    top.fill_between(grid, mean - 2 * total, mean + 2 * total, color="C0", alpha=0.15,
                     label="mean +- 2 total (MC std and noise)")
    top.fill_between(grid, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.35,
                     label="mean +- 2 std (MC dropout)")
    top.plot(grid, mean, color="C0", label="MC mean")
    top.plot(grid, f(grid), "k--", linewidth=1, label="f(x)")
    top.scatter(x_train[:, 0], y_train[:, 0], s=4, color="C1", label="training data")
    top.set_ylabel("y")
    top.legend(loc="upper left", fontsize="small")
    bottom.plot(grid, std, color="C0")
    bottom.set_ylabel("MC std")
    bottom.set_xlabel("x")
    for ax in (top, bottom):
        for a, b in TRAIN:
            ax.axvspan(a, b, color="C1", alpha=0.08, linewidth=0)
        ax.grid(True, alpha=0.3)
    top.set_title("MC dropout: predictive mean and spread (shaded: training inputs)")
    fig.savefig(out, dpi=100)


def main(n=400, units=128, rate=0.1, steps=3000, batch_size=32, learning_rate=3e-3,
         samples=100, out="mc_dropout_uncertainty.png", seed=0, verbose=True):
    """Trains the model and measures its MC predictions; returns a dict.

    `regions`: for each of `REGIONS`, a dict with `std` (mean MC std), `rmse`
    (MC mean against f), `coverage` and `coverage_total` (fractions of noisy
    held-out observations within mean +- 2 std and mean +- 2 total), on 1000
    points each; `noise`: the estimated noise std; `grid`, `mean`, `std`: the
    MC predictions on 241 points of [-6, 6]; `model`, `samples`.
    """
    rng = np.random.default_rng(seed)
    x_train, y_train = sample(TRAIN, n, rng)
    model = build_model(units, rate, seed)
    # Decayed to 0 so that the last iterate has settled.
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(keras.optimizers.Adam(schedule), "mse")
    # `steps` updates as one epoch over copies of the data: hundreds of
    # epochs of a few batches cost more in overhead.
    copies = -(-steps * batch_size // n)
    start = time.perf_counter()
    model.fit(np.tile(x_train, (copies, 1)), np.tile(y_train, (copies, 1)),
              batch_size=batch_size, epochs=1, verbose=0)
    seconds = time.perf_counter() - start

    mean, _ = kr.uncertainty.mc_predict(model, x_train, samples=samples, batch_size=256)
    noise = float(np.sqrt(np.mean((y_train - mean) ** 2)))
    regions = {}
    for name, ranges in REGIONS.items():
        x, y = sample(ranges, 1000, rng)
        mean, std = kr.uncertainty.mc_predict(model, x, samples=samples, batch_size=256)
        total = np.sqrt(std**2 + noise**2)
        regions[name] = {
            "std": float(std.mean()),
            "rmse": float(np.sqrt(np.mean((mean - f(x)) ** 2))),
            "coverage": float(np.mean(np.abs(y - mean) <= 2 * std)),
            "coverage_total": float(np.mean(np.abs(y - mean) <= 2 * total)),
        }
    grid = np.linspace(-6.0, 6.0, 241, dtype="float32")[:, None]
    mean, std = kr.uncertainty.mc_predict(model, grid, samples=samples, batch_size=256)

    if verbose:
        print(f"backend: {keras.backend.backend()}, keras_regx {kr.__version__}")
        print(f"{n} training points, {steps} steps of batch {batch_size} ({seconds:.1f} s), "
              f"dropout rate {rate:g}, {samples} MC samples")
        print(f"noise std: true {NOISE:g}, estimated {noise:.3f}")
        print(f"{'region':<8}{'x':<24}{'MC std':>8}{'rmse':>8}"
              f"{'in +-2 std':>12}{'in +-2 total':>14}")
        for name, r in regions.items():
            where = " u ".join(f"[{a:g}, {b:g}]" for a, b in REGIONS[name])
            print(f"{name:<8}{where:<24}{r['std']:8.3f}{r['rmse']:8.3f}"
                  f"{r['coverage']:12.3f}{r['coverage_total']:14.3f}")
    plot(grid, mean, std, noise, x_train, y_train, out)
    if verbose:
        print(f"saved {out}")
    return {"regions": regions, "noise": noise, "grid": grid, "mean": mean, "std": std,
            "model": model, "samples": samples}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--out", default="mc_dropout_uncertainty.png")
    parser.add_argument("--fast", action="store_true",
                        help="a small network, few steps and samples (a smoke test)")
    args = parser.parse_args()
    if args.fast:
        main(rate=args.rate, out=args.out, **FAST)
    else:
        main(rate=args.rate, out=args.out)
