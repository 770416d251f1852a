"""Magnitude pruning of a digits MLP: accuracy and compressed size against sparsity.

TF Model Optimization's pruning guide, for Keras 3 on any backend: train a
dense model, fine-tune a pruned copy (`kr.pruning.prune` with TF Model
Optimization's `PolynomialDecay`, from 0 to the target over the first half of
fine-tuning), strip it (`kr.pruning.strip`: a plain Keras model, zeros in its
weights) and compare test accuracy and the size of the saved `.keras` file
compressed with zip (DEFLATE): a file of zeros compresses well. The dense
model is fine-tuned for as long, so all rows have had the same training.

The MLP (64 -> 256 relu -> 128 relu -> 10) trains on scikit-learn's bundled
digits (no download), 1297 images, tested on 500. Rows: dense; 50 / 80 / 90%
of every kernel's weights pruned; 2:4 (two zeros in every four consecutive
inputs); 50% of the units.

    KERAS_BACKEND=jax python examples/prune_digits.py [--epochs 30] [--fast]

The table it prints is in the README ("Magnitude pruning").
"""

import argparse
import io
import os
import tempfile
import zipfile

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_regx as kr

BATCH = 32
FAST = {"epochs": 2, "configs": ("dense", "80%", "2:4")}
CONFIGS = {  # name: (sparsity, granularity)
    "dense": None,
    "50%": (0.5, "weight"),
    "80%": (0.8, "weight"),
    "90%": (0.9, "weight"),
    "2:4": (0.5, "2:4"),
    "50% units": (0.5, "unit"),
}


def data():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:-500], y[:-500]), (x[-500:], y[-500:])


def dense_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(256, "relu", name="hidden1"),
        keras.layers.Dense(128, "relu", name="hidden2"),
        keras.layers.Dense(10, "softmax", name="out"),
    ])


def compressed_size(model):
    """Bytes of the model's `.keras` file compressed with zip (DEFLATE)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(path, "model.keras")
        return len(buffer.getvalue())


def kernel_sparsity(model):
    kernels = [keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers]
    return sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)


def main(epochs=30, configs=tuple(CONFIGS)):
    (x, y), (x_test, y_test) = data()
    print(f"backend {keras.backend.backend()}: {len(x)} training digits, "
          f"{epochs} epochs dense then {epochs} fine-tuning")
    base = dense_model()
    base.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    base.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0)
    steps = epochs * (len(x) // BATCH + (len(x) % BATCH > 0))
    results = {}
    for name in configs:
        setting = CONFIGS[name]
        if setting is None:
            model = keras.models.clone_model(base)
            model.set_weights(base.get_weights())
        else:
            sparsity, granularity = setting
            schedule = kr.pruning.PolynomialDecay(
                0.0, sparsity, begin_step=0, end_step=max(steps // 2, 1), frequency=10)
            if granularity == "2:4":
                schedule = kr.pruning.ConstantSparsity(0.5, begin_step=0, frequency=10)
            model = kr.pruning.prune(base, schedule, granularity=granularity,
                                     layers=["hidden1", "hidden2"] if granularity == "unit" else None)
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
                  callbacks=[kr.callbacks.RegularizationDriver()])
        final = kr.pruning.strip(model) if setting is not None else model
        final.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
        accuracy = final.evaluate(x_test, y_test, verbose=0)[1]
        results[name] = {
            "sparsity": kernel_sparsity(final),
            "accuracy": float(accuracy),
            "zipped_bytes": compressed_size(final),
        }
    dense_size = results["dense"]["zipped_bytes"] if "dense" in results else None
    print(f"{'model':<10} {'zeros':>6} {'test accuracy':>14} {'zipped .keras':>14} {'vs dense':>9}")
    for name, r in results.items():
        ratio = f"{dense_size / r['zipped_bytes']:.2f}x" if dense_size else "-"
        print(f"{name:<10} {r['sparsity']:>6.1%} {r['accuracy']:>14.3f} "
              f"{r['zipped_bytes'] / 1024:>11.1f} KB {ratio:>9}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fast", action="store_true", help="a quick run of three rows")
    args = parser.parse_args()
    main(**FAST) if args.fast else main(epochs=args.epochs)
