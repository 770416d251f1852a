"""Nine ways to regularize a small MLP, compared where regularization matters.

The regime: few training examples and many irrelevant inputs. Each of 200
training digits (scikit-learn's bundled 8x8 images, no download) is given as
its 64 pixels, standardized on the training images, plus 192 columns of pure
noise (standard normal, independent of the label, so on the pixels' scale):
three of every four inputs carry no information. There an MLP without
regularization (256 -> 64 relu -> 10 softmax) fits its 200 images exactly,
noise included, and tests far below the same MLP given the pixels alone (on
the full, clean digits, the previous version of this demo found no method
ahead of no regularization by more than 6 of 359 test images). The methods
differ in how much of that loss they win back and in whether they find the
noise inputs.

Nine configurations: no regularization; `kr.L1`, `kr.L2`, `kr.ElasticNet`
(l1 = l2) on both kernels (at a constant strength they are Keras' `L1` /
`L2` / `L1L2`); Keras' own `Dropout` after the hidden layer; an ElasticNet
whose strength warms up linearly over the first fifth of the steps, then
decays along a cosine to a tenth of its peak (`kr.schedules.Join` of
`Linear` and `Cosine`, driven by `kr.callbacks.RegularizationDriver`);
proximal L1 on both kernels (`kr.L1(l1, proximal=True)`: exact zeros); group
lasso on the rows of the hidden kernel (`kr.GroupLasso(factor, axis=0,
proximal=True)`: one group per input, and a zeroed row is an input the
network no longer reads); and DropConnect in the hidden layer
(`kr.layers.DropConnectDense`, which drops input -> hidden weights where
`Dropout` drops hidden units).

The protocol. The digits are split once (stratified, `random_state=0`, the
same for every seed) into 797 test images, 400 validation images and a pool
of 600 from which each seed draws its 200 training images; the seed also
draws the noise columns, the initial weights, the batches and the dropout
masks, and is the same for every configuration, so the runs of one seed are
paired. Every configuration trains the same way: 100 epochs of batch 50 with
`keras.optimizers.SGD(0.05, momentum=0.9)`. SGD for all because group
lasso's proximal step needs plain SGD (its block soft-threshold has no
closed form for Adam's per-coordinate steps), and one optimizer for all so
that only the regularization differs. Each configuration's strength (penalty
factor, schedule peak or drop rate) is chosen once, from a three-value grid
(`CONFIGS`), by seed 0's validation score: the mean validation accuracy over
the last 5 epochs, a tie going to the smaller value. With that strength the
configuration is trained on seeds 1 and 2 as well (seed 0's run is the one
already trained), and each seed's model is evaluated on the test images
once; the test images play no part in any choice. The grids were centred on
the best validation score of a wider sweep on seed 0. A reference, not a
competitor: the same MLP without regularization on the 64 pixels alone,
seeds 0-2.

Prints the regime and the protocol, one progress line per configuration
(seed 0's validation score of each grid value and the chosen strength), then
the table: chosen strength; train and test accuracy at inference, means over
the seeds, test ± its standard deviation over the seeds (n - 1); "test vs
none", the mean over the seeds of the test accuracy minus that of no
regularization on the same seed; the train - test gap; the fraction of
kernel weights exactly 0 after the last epoch; and how many noise and pixel
inputs the hidden layer dropped (all-zero rows of its kernel,
`kr.sparsity.structured_count(kernel, axis=0)`), means over the seeds. Then
the reference and three paragraphs of reading, every claim in them computed
from the results. Saves seed 0's validation accuracy, exact-zero fraction
(`kr.callbacks.SparsityMonitor`) and inputs dropped per epoch, for each
configuration at its chosen strength, to `--out`, and prints the path.

    python examples/compare_regularizers.py [--epochs 100] [--seeds 3]
        [--out compare_regularizers.png] [--fast]

Output on this machine (JAX backend, 2026-11-30; a 2-core CPU shared with
other jobs, load average 3.8-4.4 during the run, so the times are
inflated), defaults:

    backend: jax, keras_regx 0.1.0.dev0
    Regime: 200 training digits, each given as its 64 pixels plus 192 inputs of pure noise (192 of 256
      inputs carry no information about the digit). Why: with few examples and many irrelevant inputs a
      network without regularization fits the noise, and regularization has work to do.
    Protocol: MLP 256-64-10, 100 epochs of batch 50, SGD(0.05, momentum 0.9) for every method. Each
      method's strength is chosen on 400 validation digits (seed 0, mean accuracy of the last 5 epochs),
      then tested once on 797 test digits with seeds 0-2 (each seed: new training digits, noise and
      initial weights).

    none            validation -: 0.755  -> -  (10.8 s)
    l1              validation 0.0003: 0.803  0.001: 0.909  0.003: 0.890  -> 0.001  (7.2 s)
    l2              validation 0.003: 0.800  0.01: 0.841  0.03: 0.831  -> 0.01  (7.6 s)
    elasticnet      validation 0.0003: 0.814  0.001: 0.905  0.003: 0.888  -> 0.001  (8.9 s)
    dropout         validation 0.2: 0.776  0.5: 0.783  0.7: 0.777  -> 0.5  (9.2 s)
    scheduled_enet  validation 0.001: 0.862  0.003: 0.907  0.01: 0.903  -> 0.003  (8.6 s)
    proximal_l1     validation 0.0003: 0.805  0.001: 0.907  0.003: 0.899  -> 0.001  (7.3 s)
    group_lasso     validation 0.003: 0.875  0.01: 0.931  0.03: 0.930  -> 0.01  (7.0 s)
    dropconnect     validation 0.2: 0.768  0.5: 0.797  0.7: 0.783  -> 0.5  (9.0 s)

                                                                                      test vs        exact noise in pixel in
    config         method                                strength  train     test±std    none    gap zeros  dropped  dropped
    none           no regularization                            -  1.000  0.742±0.024  +0.000  0.258  0.00    0/192     0/64
    l1             kr.L1                                    0.001  1.000  0.870±0.025  +0.128  0.130  0.00    0/192     0/64
    l2             kr.L2                                     0.01  1.000  0.815±0.012  +0.074  0.185  0.00    0/192     0/64
    elasticnet     kr.ElasticNet, l1 = l2                   0.001  1.000  0.871±0.015  +0.130  0.129  0.00    0/192     0/64
    dropout        keras.layers.Dropout                       0.5  1.000  0.779±0.012  +0.037  0.221  0.00    0/192     0/64
    scheduled_enet kr.ElasticNet, Join(Linear, Cosine)      0.003  1.000  0.874±0.010  +0.133  0.126  0.00    0/192     0/64
    proximal_l1    kr.L1(proximal=True)                     0.001  1.000  0.871±0.024  +0.130  0.129  0.85    2/192     9/64
    group_lasso    kr.GroupLasso(axis=0, proximal=True)      0.01  1.000  0.912±0.007  +0.170  0.088  0.60  141/192    19/64
    dropconnect    kr.layers.DropConnectDense                 0.5  1.000  0.771±0.029  +0.030  0.229  0.00    0/192     0/64
    (means over 3 seeds. Reference, the same MLP on the 64 pixels alone, no regularization: test 0.905±0.006)

    Test accuracy: highest with group_lasso, 0.912±0.007 against 0.742±0.024 without regularization
      (+0.170: about 136 more of the 797 test images right); the same MLP given the pixels alone reaches
      0.905. Every method beats no regularization on all 3 seeds (the smallest gain: dropconnect,
      +0.030).
    Train-test gap: 0.258 without regularization, from 0.088 (group_lasso) to 0.229 (dropconnect) with
      it; every run fits its 200 training images exactly (train accuracy 1.000), so a narrower gap is a
      higher test accuracy.
    Exact zeros: only proximal_l1 (0.85 of the kernel weights; noise inputs dropped: 2/192, pixel inputs
      dropped: 9/64) and group_lasso (0.60 of the kernel weights; noise inputs dropped: 141/192, pixel
      inputs dropped: 19/64) leave any. About 8 of the 64 pixels are blank in every training image;
      dropping those costs nothing.

    total 80 s; figure saved to compare_regularizers.png

Proximal L1 zeroes single weights, 85% of them here, yet empties the whole
row of only 2 noise inputs; group lasso's penalty is on whole rows, and it
emptied 141 of the 192 noise rows and 19 pixel rows (about 8 of them blank
in every training image), at the pixels-only reference's accuracy (0.912
against 0.905).

On the other backends the same seed gives other initial weights, batches and
masks (Keras draws them with the backend's generator). TensorFlow (294 s,
load average 2.2-3.5) and PyTorch (511 s, load average up to 4.6) ranked the
groups the same: group lasso 0.906 and 0.911 (reference 0.907 and 0.912), the L1
family (L1, ElasticNet, scheduled ElasticNet, proximal L1) 0.878-0.882 and
0.870-0.889, L2 0.811 and 0.816, Dropout and DropConnect 0.774-0.791, no
regularization 0.744 and 0.754; exact zeros only from proximal L1 (61-65
noise inputs dropped there, at 0.003) and group lasso (142 and 139). Several
configurations chose the largest value of their grid there (the progress
lines flag it). TensorFlow takes about 65 ms per epoch of 4 small steps here
(6.6 s for one 100-epoch run), so its time grows with the epochs.

About 80 s on JAX on the loaded machine (85 s with the imports), most of it
compilation: each of the 46 runs (25 on seed 0's grids, 18 on seeds 1-2, 3
for the reference) builds and compiles a new model; seeds 1-2 and the
reference skip the per-epoch logging, which only the choice and the figure
need. `--fast` (3 epochs, one seed, the largest strength of each grid only:
the smoke test in tests/test_examples.py) takes 10-20 s per backend with the
imports.
"""

import argparse
import os
import textwrap
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import keras_regx as kr

# (configuration, what implements it, the grid its strength is chosen from).
# A strength is the penalty factor, the peak of a schedule, or a drop rate.
CONFIGS = (
    ("none", "no regularization", (None,)),
    ("l1", "kr.L1", (3e-4, 1e-3, 3e-3)),
    ("l2", "kr.L2", (3e-3, 1e-2, 3e-2)),
    ("elasticnet", "kr.ElasticNet, l1 = l2", (3e-4, 1e-3, 3e-3)),
    ("dropout", "keras.layers.Dropout", (0.2, 0.5, 0.7)),
    ("scheduled_enet", "kr.ElasticNet, Join(Linear, Cosine)", (1e-3, 3e-3, 1e-2)),
    ("proximal_l1", "kr.L1(proximal=True)", (3e-4, 1e-3, 3e-3)),
    ("group_lasso", "kr.GroupLasso(axis=0, proximal=True)", (3e-3, 1e-2, 3e-2)),
    ("dropconnect", "kr.layers.DropConnectDense", (0.2, 0.5, 0.7)),
)
GRIDS = {name: grid for name, _, grid in CONFIGS}
PIXELS = 64
EPOCHS = 100
LAST = 5  # a run's validation score: its mean validation accuracy over the last 5 epochs
TEST_SIZE, VALIDATION_SIZE = 797, 400  # fixed for every seed; 600 images left for training
# The smoke test: few epochs, one seed, the largest strength of each grid only.
FAST = dict(epochs=3, seeds=1, grids={name: grid[-1:] for name, grid in GRIDS.items()})


def load_data(seed, train_size=200, noise_inputs=192):
    """Digits plus pure-noise inputs: `(x, y)` for train, validation and test.

    The test and validation images are the same for every seed; `seed` draws
    the `train_size` training images from the 600 others, and the noise
    columns of every split. The pixels are standardized on the training
    images; a pixel blank in all of them stays 0. `train_size` should divide
    by the batch size: a smaller last batch would cost JAX a second
    compilation of the step.
    """
    x, y = load_digits(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=0, stratify=y)
    x_pool, x_val, y_pool, y_val = train_test_split(
        x_rest, y_rest, test_size=VALIDATION_SIZE, random_state=0, stratify=y_rest)
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(x_pool))[:train_size]
    x_train, y_train = x_pool[chosen], y_pool[chosen]
    scaler = StandardScaler().fit(x_train)  # fitted on the training images only
    return [
        (np.concatenate([scaler.transform(x), rng.standard_normal((len(x), noise_inputs))],
                        axis=1).astype("float32"), y)
        for x, y in ((x_train, y_train), (x_val, y_val), (x_test, y_test))
    ]


def schedule(peak, total_steps):
    """Linear warm-up from 0 over the first fifth of the steps, then cosine decay to peak / 10."""
    warmup = max(total_steps // 5, 1)
    return kr.schedules.Join(
        [kr.schedules.Linear(0.0, peak, end_step=warmup),
         kr.schedules.Cosine(peak, peak / 10, end_step=max(total_steps - warmup, 1))],
        boundaries=[warmup],
    )


def regularizers(config, strength, total_steps):
    """The kernel regularizers of the hidden and the output layer."""
    if config == "l1":
        return kr.L1(strength), kr.L1(strength)
    if config == "l2":
        return kr.L2(strength), kr.L2(strength)
    if config == "elasticnet":
        return kr.ElasticNet(strength, strength), kr.ElasticNet(strength, strength)
    if config == "scheduled_enet":
        strengths = schedule(strength, total_steps)
        shared = kr.ElasticNet(l1=strengths, l2=strengths, name="enet")  # one, both layers
        return shared, shared
    if config == "proximal_l1":
        return kr.L1(strength, proximal=True), kr.L1(strength, proximal=True)
    if config == "group_lasso":
        # One group per row of the hidden kernel (inputs, units): one per input.
        return kr.GroupLasso(strength, axis=0, proximal=True), None
    return None, None


def build_model(config, strength, inputs, units, total_steps, seed):
    """inputs -> units relu -> 10 softmax, regularized as `config` says."""
    hidden_reg, output_reg = regularizers(config, strength, total_steps)
    if config == "dropconnect":
        # Drops input -> hidden weights, where Dropout drops hidden units.
        hidden = kr.layers.DropConnectDense(units, rate=strength, activation="relu",
                                            seed=seed, name="hidden")
    else:
        hidden = keras.layers.Dense(units, activation="relu", kernel_regularizer=hidden_reg,
                                    name="hidden")
    layers = [keras.Input((inputs,)), hidden]
    if config == "dropout":
        layers.append(keras.layers.Dropout(strength, seed=seed))
    layers.append(keras.layers.Dense(10, activation="softmax", kernel_regularizer=output_reg,
                                     name="output"))
    return keras.Sequential(layers)


class ValidationAccuracy(keras.callbacks.Callback):
    """Logs `val_accuracy` at each epoch end: one direct call of the model.

    What `fit(validation_data=...)` reports, at a fraction of its cost here:
    `fit` runs a compiled evaluation loop per epoch, which costs JAX one more
    compilation per model and TensorFlow about as much as the epoch's
    training on this small model.
    """

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = accuracies(self.model, (self.x, self.y))[0]


def inputs_dropped(model):
    """(pixel, noise) inputs the hidden layer no longer reads: all-zero kernel rows."""
    kernel = keras.ops.convert_to_numpy(model.get_layer("hidden").kernel)
    return tuple(int(kr.sparsity.structured_count(rows, axis=0))
                 for rows in (kernel[:PIXELS], kernel[PIXELS:]))


def kernel_sparsity(model):
    """The fraction of kernel weights exactly 0: SparsityMonitor's "sparsity".

    Counted eagerly, kernel by kernel: `kr.sparsity.model_sparsity` would
    compile a pass for each new model, which TensorFlow warns about when it
    sees many models.
    """
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    zeros = sum(int(kr.sparsity.zero_count(kernel)) for kernel in kernels)
    return zeros / sum(int(np.prod(kernel.shape)) for kernel in kernels)


class InputsDropped(keras.callbacks.Callback):
    """Logs `pixels_dropped` and `noise_dropped` (counts) at each epoch end."""

    def on_epoch_end(self, epoch, logs=None):
        logs["pixels_dropped"], logs["noise_dropped"] = inputs_dropped(self.model)


def train(config, strength, data, epochs, units, batch_size, learning_rate, seed,
          curves=True):
    """One training run; returns the model, its History and the fit() wall time.

    With `curves`, logs the validation accuracy and the sparsity per epoch
    (what the choice of strength and the figure need; the other seeds' runs
    skip them, which saves about a third of a run's time on JAX).
    """
    (x_train, y_train), (x_val, y_val), _ = data
    keras.utils.set_random_seed(seed)  # the same initial weights and batches per seed
    total_steps = epochs * -(-len(x_train) // batch_size)
    model = build_model(config, strength, x_train.shape[1], units, total_steps, seed)
    model.compile(keras.optimizers.SGD(learning_rate, momentum=0.9),
                  "sparse_categorical_crossentropy")
    callbacks = []
    if curves:
        callbacks = [ValidationAccuracy(x_val, y_val), InputsDropped(),
                     # "sparsity": the fraction of kernel weights exactly 0.
                     kr.callbacks.SparsityMonitor(threshold=0.0, per_layer=False,
                                                  regularization_loss=False)]
    if config in ("scheduled_enet", "proximal_l1", "group_lasso"):
        # Drives the schedule / installs the proximal step after each update.
        callbacks.insert(0, kr.callbacks.RegularizationDriver(log=False))
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                        verbose=0, callbacks=callbacks)
    return model, history, time.perf_counter() - start


def accuracies(model, *splits):
    """Accuracy at inference (no dropout) on each `(x, y)` split.

    One direct call of the model on all the splits together: nothing to
    compile for a forward pass this small.
    """
    x = np.concatenate([x for x, _ in splits])
    probabilities = keras.ops.convert_to_numpy(model(x, training=False))
    predicted = np.argmax(probabilities, axis=-1)
    bounds = np.cumsum([0] + [len(y) for _, y in splits])
    return [float(np.mean(predicted[a:b] == y))
            for (_, y), a, b in zip(splits, bounds[:-1], bounds[1:])]


def measure(model, seconds, data, seed):
    """A finished run's figures; the only place the test images are used."""
    (x_train, y_train), _, (x_test, y_test) = data
    train_accuracy, test_accuracy = accuracies(model, (x_train, y_train), (x_test, y_test))
    pixels_dropped, noise_dropped = inputs_dropped(model)
    return {
        "seed": seed,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "sparsity": kernel_sparsity(model),
        "pixels_dropped": pixels_dropped,
        "noise_dropped": noise_dropped,
        "seconds": seconds,
    }


def _strength(value):
    return "-" if value is None else f"{value:g}"


def _std(values):
    """Standard deviation over the seeds (n - 1 in the denominator); 0 for one seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _pm(mean, std, seeds):
    return f"{mean:.3f}±{std:.3f}" if seeds > 1 else f"{mean:.3f}"


def _paragraph(text):
    # Continuation lines are indented, so no wrapped line starts with a
    # configuration's name (the table rows and progress lines do).
    return textwrap.fill(text, width=100, subsequent_indent="  ")


def plot(rows, noise_inputs, out):
    """Validation accuracy, exact zeros and inputs dropped per epoch (seed 0)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(14, 4.2), layout="constrained")
    accuracy, zeros, dropped = fig.subplots(1, 3)
    for i, row in enumerate(rows):
        colour = f"C{i % 10}"
        label = f"{row['config']} ({_strength(row['strength'])})"
        epochs = np.arange(1, len(row["val_curve"]) + 1)
        accuracy.plot(epochs, row["val_curve"], color=colour, label=label)
        zeros.plot(epochs, row["sparsity_curve"], color=colour, label=label)
        dropped.plot(epochs, row["noise_curve"], color=colour, label=label)
        dropped.plot(epochs, row["pixels_curve"], color=colour, linestyle="--")
    # Zoomed in on the later epochs, where the configurations differ.
    later = [v for row in rows for v in row["val_curve"][len(row["val_curve"]) // 3:]]
    accuracy.set_ylim(max(min(later) - 0.02, 0.0), min(max(later) + 0.02, 1.0))
    accuracy.set_title("validation accuracy")
    zeros.set_title("kernel weights exactly 0 (fraction)")
    zeros.set_ylim(-0.02, 1.02)
    dropped.set_title(f"inputs dropped: noise (solid, of {noise_inputs}), "
                      f"pixels (dashed, of {PIXELS})", fontsize="medium")
    dropped.set_ylim(-2, noise_inputs + 2)
    for ax in (accuracy, zeros, dropped):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    dropped.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    fig.suptitle("each configuration at its chosen strength, seed 0")
    fig.savefig(out, dpi=90)


def table(rows, seeds, noise_inputs):
    """The results table, one line per configuration, as a list of lines."""
    test = "test±std" if seeds > 1 else "test"
    lines = [
        f"{'':<61}{'':>7}{'':>13}{'test vs':>8}{'':>7}{'exact':>6}{'noise in':>9}"
        f"{'pixel in':>9}",
        f"{'config':<15}{'method':<37}{'strength':>9}{'train':>7}{test:>13}{'none':>8}"
        f"{'gap':>7}{'zeros':>6}{'dropped':>9}{'dropped':>9}",
    ]
    for row in rows:
        test = _pm(row["test_accuracy"], row["test_std"], seeds)
        lines.append(
            f"{row['config']:<15}{row['method']:<37}{_strength(row['strength']):>9}"
            f"{row['train_accuracy']:7.3f}{test:>13}{row['vs_none']:+8.3f}{row['gap']:7.3f}"
            f"{row['sparsity']:6.2f}{row['noise_dropped']:>5.0f}/{noise_inputs:<3}"
            f"{row['pixels_dropped']:>6.0f}/{PIXELS:<2}"
        )
    return lines


def reading(rows, reference, n_test, train_size, blank, seeds):
    """Three paragraphs of plain reading; every claim is computed from `rows`."""
    none, others = rows[0], rows[1:]
    best = max(others, key=lambda r: r["test_accuracy"])
    least = min(others, key=lambda r: r["vs_none"])
    beat = [r["config"] for r in others
            if all(s["test_accuracy"] > n["test_accuracy"]
                   for s, n in zip(r["seeds"], none["seeds"]))]
    close = [r["config"] for r in others if r is not best
             and best["test_accuracy"] - r["test_accuracy"] <= best["test_std"]]
    every_seed = f"on all {seeds} seeds" if seeds > 1 else "on its seed"
    if len(beat) == len(others):
        beaten = (f"Every method beats no regularization {every_seed} (the smallest gain: "
                  f"{least['config']}, {least['vs_none']:+.3f}).")
    else:
        below = ", ".join(f"{r['config']} ({r['vs_none']:+.3f})"
                          for r in others if r["config"] not in beat)
        beaten = (f"Above no regularization {every_seed}: {', '.join(beat) or 'none'}; "
                  f"not: {below}.")
    paragraphs = [
        f"Test accuracy: highest with {best['config']}, "
        f"{_pm(best['test_accuracy'], best['test_std'], seeds)} against "
        f"{_pm(none['test_accuracy'], none['test_std'], seeds)} without regularization "
        f"({best['vs_none']:+.3f}: about {best['vs_none'] * n_test:.0f} more of the {n_test} "
        f"test images right); the same MLP given the pixels alone reaches {reference:.3f}. "
        + (f"Within one seed std of the best: {', '.join(close)}. " if seeds > 1 and close
           else "")
        + beaten
    ]
    narrowest = min(others, key=lambda r: r["gap"])
    widest = max(others, key=lambda r: r["gap"])
    low = min(r["train_accuracy"] for r in rows)
    if low == 1.0:
        fit = (f"every run fits its {train_size} training images exactly (train accuracy "
               "1.000), so a narrower gap is a higher test accuracy")
    else:
        lowest = min(rows, key=lambda r: r["train_accuracy"])["config"]
        fit = f"train accuracy goes down to {low:.3f} ({lowest})"
    paragraphs.append(
        f"Train-test gap: {none['gap']:.3f} without regularization, from "
        f"{narrowest['gap']:.3f} ({narrowest['config']}) to {widest['gap']:.3f} "
        f"({widest['config']}) with it; {fit}."
    )
    sparse = [r for r in rows if r["sparsity"] > 0.0]
    if sparse:
        parts = [f"{r['config']} ({r['sparsity']:.2f} of the kernel weights; noise inputs "
                 f"dropped: {r['noise_dropped']:.0f}/{r['noise_inputs']}, pixel inputs "
                 f"dropped: {r['pixels_dropped']:.0f}/{PIXELS})" for r in sparse]
        paragraphs.append(
            f"Exact zeros: only {' and '.join(parts)} "
            f"{'leave' if len(sparse) > 1 else 'leaves'} any. About {blank:.0f} of the "
            f"{PIXELS} pixels are blank in every training image; dropping those costs "
            "nothing."
        )
    else:
        paragraphs.append("Exact zeros: no method left a kernel weight exactly 0.")
    return [_paragraph(p) for p in paragraphs]


def main(
    epochs=EPOCHS,
    seeds=3,
    train_size=200,
    noise_inputs=192,
    units=64,
    batch_size=50,
    learning_rate=0.05,
    grids=None,
    out="compare_regularizers.png",
    verbose=True,
):
    """Chooses each configuration's strength on seed 0's validation split,
    then reports it on the test split for seeds 0 .. seeds - 1.

    For every configuration of `CONFIGS`, trains one model per strength in
    its grid (`grids[config]`, default `GRIDS`) on seed 0, keeps the one with
    the best validation score (mean validation accuracy over the last 5
    epochs; a tie goes to the earlier, smaller grid point), trains that
    strength on the other seeds, and only then evaluates each seed's model on
    the test images. Returns one dict per configuration: `config`, `method`,
    `grid`, `strength` (the chosen grid point), `scores` (seed 0's
    validation score of each grid point), `seeds` (one dict per seed:
    `seed`, `train_accuracy`, `test_accuracy`, `sparsity` -- the fraction of
    kernel weights exactly 0 after the last epoch --, `noise_dropped` and
    `pixels_dropped` -- all-zero input rows of the hidden kernel --, and
    `seconds`, the fit() wall time, compilation included), the means over
    the seeds `train_accuracy`, `test_accuracy`, `sparsity`, `noise_dropped`,
    `pixels_dropped`, with `test_std`, `gap` (mean train - mean test),
    `vs_none` (mean over seeds of test accuracy minus that of no
    regularization), `noise_inputs`, `seconds` (all runs of the
    configuration) and seed 0's per-epoch `val_curve`, `sparsity_curve`,
    `noise_curve` and `pixels_curve` (inputs dropped). The figure is saved to
    `out`.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError("Invalid value for argument `seeds`: expected an integer >= 1 "
                         f"(seed 0 chooses the strengths). Received: seeds={seeds!r}")
    grids = GRIDS if grids is None else grids
    begin = time.perf_counter()
    datasets = [load_data(seed, train_size, noise_inputs) for seed in range(seeds)]
    (x_train, _), (x_val, _), (x_test, _) = datasets[0]
    n_test = len(x_test)
    # Pixels constant over the training images are 0 after standardization.
    blank = np.mean([np.sum(np.all(d[0][0][:, :PIXELS] == 0.0, axis=0)) for d in datasets])
    fit_args = (epochs, units, batch_size, learning_rate)
    if verbose:
        print(f"backend: {keras.backend.backend()}, keras_regx {kr.__version__}")
        for text in (
            f"Regime: {train_size} training digits, each given as its {PIXELS} pixels plus "
            f"{noise_inputs} inputs of pure noise ({noise_inputs} of {PIXELS + noise_inputs} "
            "inputs carry no information about the digit). Why: with few examples and many "
            "irrelevant inputs a network without regularization fits the noise, and "
            "regularization has work to do.",
            f"Protocol: MLP {PIXELS + noise_inputs}-{units}-10, {epochs} epochs of batch "
            f"{batch_size}, SGD({learning_rate:g}, momentum 0.9) for every method. Each "
            f"method's strength is chosen on {len(x_val)} validation digits (seed 0, mean "
            f"accuracy of the last {LAST} epochs), then tested once on {n_test} test digits "
            f"with seeds 0-{seeds - 1} (each seed: new training digits, noise and initial "
            "weights).",
        ):
            print(_paragraph(text))
        print()
    rows = []
    for config, method, _ in CONFIGS:
        config_start = time.perf_counter()
        grid = tuple(grids[config])
        best, scores = None, []
        for strength in grid:
            run = train(config, strength, datasets[0], *fit_args, seed=0)
            scores.append(float(np.mean(run[1].history["val_accuracy"][-LAST:])))
            if best is None or scores[-1] > best[0]:
                best = (scores[-1], strength, run)
        _, strength, (model, history, seconds) = best
        # The test images are used from here on only, once per seed.
        per_seed = [measure(model, seconds, datasets[0], 0)]
        for seed in range(1, seeds):
            model, _, seconds = train(config, strength, datasets[seed], *fit_args, seed=seed,
                                      curves=False)
            per_seed.append(measure(model, seconds, datasets[seed], seed))
        means = {key: float(np.mean([s[key] for s in per_seed]))
                 for key in ("train_accuracy", "test_accuracy", "sparsity",
                             "noise_dropped", "pixels_dropped")}
        tests = [s["test_accuracy"] for s in per_seed]
        none_tests = tests if not rows else [s["test_accuracy"] for s in rows[0]["seeds"]]
        row = {
            "config": config,
            "method": method,
            "grid": grid,
            "strength": strength,
            "scores": scores,
            "seeds": per_seed,
            **means,
            "test_std": _std(tests),
            "gap": means["train_accuracy"] - means["test_accuracy"],
            "vs_none": float(np.mean(np.subtract(tests, none_tests))),
            "noise_inputs": noise_inputs,
            "seconds": time.perf_counter() - config_start,
            "val_curve": [float(v) for v in history.history["val_accuracy"]],
            "sparsity_curve": [float(v) for v in history.history["sparsity"]],
            "noise_curve": [int(v) for v in history.history["noise_dropped"]],
            "pixels_curve": [int(v) for v in history.history["pixels_dropped"]],
        }
        rows.append(row)
        if verbose:
            tried = "  ".join(f"{_strength(s)}: {v:.3f}" for s, v in zip(grid, scores))
            edge = ""  # a choice at an end of the grid: the best may lie beyond it
            if len(grid) > 2 and strength in (grid[0], grid[-1]):
                edge = " (the grid's " + ("smallest)" if strength == grid[0] else "largest)")
            print(f"{config:<15} validation {tried}  -> {_strength(strength)}{edge}  "
                  f"({row['seconds']:.1f} s)", flush=True)

    # The reference: no regularization, given the pixels alone.
    reference = []
    for seed, data in enumerate(datasets):
        pixels_only = [(x[:, :PIXELS], y) for x, y in data]
        model, _, _ = train("none", None, pixels_only, *fit_args, seed=seed, curves=False)
        reference.append(accuracies(model, pixels_only[2])[0])

    reference = (float(np.mean(reference)), _std(reference))

    plot(rows, noise_inputs, out)
    if verbose:
        print()
        for line in table(rows, seeds, noise_inputs):
            print(line)
        over = f"means over {seeds} seeds" if seeds > 1 else "one seed"
        print(f"({over}. Reference, the same MLP on the {PIXELS} pixels alone, no "
              f"regularization: test {_pm(*reference, seeds)})")
        print()
        for paragraph in reading(rows, reference[0], n_test, train_size, blank, seeds):
            print(paragraph)
        print()
        print(f"total {time.perf_counter() - begin:.0f} s; figure saved to {out}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="compare_regularizers.png")
    parser.add_argument("--fast", action="store_true",
                        help="3 epochs, one seed, one strength per configuration "
                             "(a smoke test)")
    args = parser.parse_args()
    if args.fast:
        main(out=args.out, **FAST)
    else:
        main(epochs=args.epochs, seeds=args.seeds, out=args.out)
