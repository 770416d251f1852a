"""Adding regularization to a model that was trained without it.

Keras cannot give a built layer a regularizer, so fine-tuning a pretrained
model with one usually means rebuilding it by hand.
`kr.utils.apply_regularization` returns a copy of the model with the
regularizers attached and the same weights; `kr.utils.remove_regularization`
takes them off again (e.g. before export).

The script "pretrains" a digits MLP (scikit-learn's bundled `load_digits`) with
no regularization, then fine-tunes three copies for the same number of epochs:
without regularization, with `kr.L2`, and with `kr.L1(proximal=True)` (exact
zeros, tracked by `SparsityMonitor`). It checks that each copy predicts exactly
what the pretrained model predicts before fine-tuning, and that removing the
regularizers after fine-tuning leaves the predictions unchanged.

    KERAS_BACKEND=jax python examples/regularize_pretrained.py [--fast]

Output on this machine (2-core CPU, JAX backend, 2026-11-26):

    pretrained (20 epochs, no regularization): test accuracy 0.973
    fine-tuned copy              start gap test acc  exact 0 removed gap time (s)
    none                           0.0e+00    0.976    0.000     0.0e+00      3.9
    kr.L2(1e-3)                    0.0e+00    0.976    0.000     0.0e+00      4.1
    kr.L1(1e-3, proximal=True)     0.0e+00    0.976    0.529     0.0e+00      4.5

Every copy starts exactly at the pretrained model (start gap 0) and, with its
regularizers removed, predicts exactly what it predicted with them. Twenty
epochs of proximal L1 fine-tuning zero 53% of the kernel weights at the same
test accuracy.
"""

import argparse
import os
import time

import keras
import numpy as np

import keras_regx as kr

FAST = dict(pretrain_epochs=2, finetune_epochs=2, train_size=300)


def load(train_size=None, seed=0):
    """Standardized digits, split into train and test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=seed, stratify=y)
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    return ((x_train - mean) / std).astype("float32"), y_train.astype("int32"), \
        ((x_test - mean) / std).astype("float32"), y_test.astype("int32")


def compile_model(model):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def pretrain(x, y, epochs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu", name="hidden"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])
    compile_model(model).fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def main(pretrain_epochs=20, finetune_epochs=20, train_size=None):
    x_train, y_train, x_test, y_test = load(train_size)
    pretrained = pretrain(x_train, y_train, pretrain_epochs)
    before = pretrained.predict(x_test, verbose=0)
    print(f"pretrained ({pretrain_epochs} epochs, no regularization): test accuracy "
          f"{np.mean(before.argmax(axis=1) == y_test):.3f}")
    configs = {
        "none": None,
        "kr.L2(1e-3)": kr.L2(1e-3),
        "kr.L1(1e-3, proximal=True)": kr.L1(1e-3, proximal=True),
    }
    rows = []
    print(f"{'fine-tuned copy':28s} {'start gap':>9s} {'test acc':>8s} {'exact 0':>8s} "
          f"{'removed gap':>11s} {'time (s)':>8s}")
    for name, regularizer in configs.items():
        start = time.perf_counter()
        if regularizer is None:
            copy = keras.models.clone_model(pretrained)
            copy.set_weights(pretrained.get_weights())
        else:
            copy = kr.utils.apply_regularization(pretrained, kernel_regularizer=regularizer)
        # The copy starts exactly where the pretrained model is.
        start_gap = float(np.abs(copy.predict(x_test, verbose=0) - before).max())
        monitor = kr.callbacks.SparsityMonitor(per_layer=False)
        compile_model(copy).fit(
            x_train, y_train, epochs=finetune_epochs, batch_size=64, verbose=0,
            callbacks=[kr.callbacks.RegularizationDriver(), monitor])
        after = copy.predict(x_test, verbose=0)
        # Without its regularizers the fine-tuned model predicts the same.
        plain = kr.utils.remove_regularization(copy)
        removed_gap = float(np.abs(plain.predict(x_test, verbose=0) - after).max())
        row = {
            "config": name,
            "start_gap": start_gap,
            "test_accuracy": float(np.mean(after.argmax(axis=1) == y_test)),
            "exact_zeros": kr.sparsity.model_sparsity(copy, per_layer=False)["sparsity"],
            "removed_gap": removed_gap,
            "regularizers_left": len(plain.losses),
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        print(f"{name:28s} {start_gap:9.1e} {row['test_accuracy']:8.3f} "
              f"{row['exact_zeros']:8.3f} {removed_gap:11.1e} {row['seconds']:8.1f}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a smoke test")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(**(FAST if args.fast else {}))
