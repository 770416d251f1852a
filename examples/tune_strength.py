"""Tuning a regularization strength with KerasTuner (or a plain grid search).

Searches the strength of a `kr.ElasticNet` on a small digits MLP (scikit-learn's
bundled `load_digits`, no download) by validation accuracy, then trains the
best configuration once more and reports its accuracy on a held-out test split
that the search never saw. The strength is an ordinary hyperparameter: the
tuner builds each trial's model with `kr.ElasticNet(l1=s, l2=s)`.

With `keras_tuner` installed (`pip install keras-tuner`; on the TensorFlow
backend KerasTuner also needs `tensorboard`) the search is a
`keras_tuner.GridSearch` over the values; without it, the same values in a
plain loop. Both score a trial by its best validation accuracy.

    KERAS_BACKEND=jax python examples/tune_strength.py [--fast] [--dir DIR]
"""

import argparse
import importlib.util
import os
import tempfile
import time

import keras

import keras_regx as kr

STRENGTHS = [0.0, 1e-4, 1e-3, 1e-2]
FAST = dict(strengths=[0.0, 1e-3], epochs=2, train_size=300)


def load(train_size=None, seed=0):
    """Standardized digits split into train, validation and test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_train, y_train, test_size=0.25, random_state=seed, stratify=y_train)
    if train_size is not None:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    return [((a - mean) / std).astype("float32") for a in (x_train, x_val, x_test)], [
        b.astype("int32") for b in (y_train, y_val, y_test)]


def build(strength):
    keras.utils.set_random_seed(0)
    reg = kr.ElasticNet(l1=strength, l2=strength) if strength else None
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu", kernel_regularizer=reg),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _search_with_keras_tuner(keras_tuner, strengths, data, epochs, directory):
    (x_train, x_val, _), (y_train, y_val, _) = data

    def hypermodel(hp):
        return build(hp.Choice("strength", strengths))

    tuner = keras_tuner.GridSearch(
        hypermodel, objective="val_accuracy", directory=directory,
        project_name="tune_strength", overwrite=True)
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                 batch_size=64, verbose=0)
    scores = {}
    for trial in tuner.oracle.trials.values():
        scores[trial.hyperparameters.get("strength")] = trial.score
    return "keras_tuner.GridSearch", scores


def _search_with_a_loop(strengths, data, epochs):
    (x_train, x_val, _), (y_train, y_val, _) = data
    scores = {}
    for strength in strengths:
        history = build(strength).fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
            batch_size=64, verbose=0)
        scores[strength] = max(history.history["val_accuracy"])  # the tuner's score
    return "grid search (keras_tuner, or on TensorFlow tensorboard, not installed)", scores


def main(strengths=STRENGTHS, epochs=30, train_size=None, directory=None):
    data = load(train_size)
    start = time.perf_counter()
    try:
        import keras_tuner
    except ImportError:
        keras_tuner = None
    # On TensorFlow, KerasTuner needs TensorBoard's hparams plugin.
    if keras.backend.backend() == "tensorflow" and not importlib.util.find_spec("tensorboard"):
        keras_tuner = None
    if keras_tuner is None:
        method, scores = _search_with_a_loop(strengths, data, epochs)
    else:
        directory = directory or tempfile.mkdtemp(prefix="tune_strength_")
        method, scores = _search_with_keras_tuner(
            keras_tuner, strengths, data, epochs, directory)
    # Ties go to the smaller strength.
    best = max(sorted(scores), key=lambda s: scores[s])
    print(f"{method}: {len(scores)} trials in {time.perf_counter() - start:.1f} s")
    for strength in sorted(scores):
        mark = "  <- best" if strength == best else ""
        print(f"  ElasticNet strength {strength:<8g} val accuracy {scores[strength]:.3f}{mark}")
    (x_train, _, x_test), (y_train, _, y_test) = data
    model = build(best)
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    _, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"best strength {best:g}: test accuracy {test_accuracy:.3f}")
    return {"method": method, "scores": scores, "best": best,
            "test_accuracy": float(test_accuracy)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a smoke test: 2 values, 2 epochs")
    parser.add_argument("--dir", default=None, help="KerasTuner's working directory")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(**(FAST if args.fast else {}), directory=args.dir)
