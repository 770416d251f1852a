"""Scheduled ElasticNet on scikit-learn's bundled digits (1797 8x8 images).

Trains a small MLP whose ElasticNet strength warms up linearly and then decays
along a cosine, and prints the strength and the validation accuracy per epoch.

    KERAS_BACKEND=jax python examples/scheduled_regularization.py [--epochs N]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_regx as kr


def main(epochs=20, verbose=True):
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    batch_size = 64
    steps_per_epoch = -(-len(x_train) // batch_size)
    warmup = 3 * steps_per_epoch
    total = epochs * steps_per_epoch
    strength = kr.schedules.Join(
        [
            kr.schedules.Linear(0.0, 1e-3, end_step=warmup),
            kr.schedules.Cosine(1e-3, 1e-4, end_step=max(total - warmup, 1)),
        ],
        boundaries=[warmup],
    )
    reg = kr.ElasticNet(l1=strength, l2=strength, name="enet")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu", kernel_regularizer=reg),
            keras.layers.Dense(64, activation="relu", kernel_regularizer=reg),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if verbose:
                print(
                    f"epoch {epoch + 1:3d}  strength {logs['enet/l1']:.2e}  "
                    f"loss {logs['loss']:.4f}  val_accuracy {logs['val_accuracy']:.4f}"
                )

    if verbose:
        print(f"backend: {keras.backend.backend()}, keras_regx {kr.__version__}")
        print(f"digits: {len(x_train)} train / {len(x_val)} validation images")
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x_val, y_val),
        verbose=0,
        callbacks=[kr.callbacks.RegularizationDriver(), Report()],
    )
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    main(parser.parse_args().epochs)
