"""mc_predict: Monte Carlo mean and spread in batched passes."""

import keras
import numpy as np
import pytest

import keras_regx as kr
from keras_regx.layers import MCDropout
from keras_regx.uncertainty import mc_predict


def sum_model(units, rate, seed=0):
    """Ones -> MCDropout -> sum: a sum of `units` Bernoulli(1 - p) / (1 - p) draws.

    Mean `units`, standard deviation sqrt(units * p / (1 - p)).
    """
    model = keras.Sequential([
        keras.Input((units,)),
        MCDropout(rate, seed=seed),
        keras.layers.Dense(1, use_bias=False, kernel_initializer="ones"),
    ])
    return model


def test_mean_and_std_match_the_closed_form():
    units, p, samples, rows = 100, 0.2, 200, 50
    mean, std = mc_predict(sum_model(units, p), np.ones((rows, units), "float32"),
                           samples=samples, batch_size=25)
    assert mean.shape == std.shape == (rows, 1)
    assert mean.dtype == std.dtype == np.float32
    sigma = np.sqrt(units * p / (1 - p))
    # Over all rows, the mean of the row means has standard error
    # sigma / sqrt(samples * rows); each row's sample std is within about
    # sigma / sqrt(2 * samples) of sigma.
    assert abs(mean.mean() - units) < 5 * sigma / np.sqrt(samples * rows)
    assert abs(std.mean() - sigma) < 5 * sigma / np.sqrt(2 * samples * rows) + 0.01 * sigma
    assert np.all(np.abs(std - sigma) < 5 * sigma / np.sqrt(2 * samples))


def test_agrees_with_a_loop_of_predict_calls():
    model = keras.Sequential([
        keras.Input((3,)), keras.layers.Dense(16, "relu"), MCDropout(0.3, seed=1),
        keras.layers.Dense(2),
    ])
    x = np.random.normal(size=(8, 3)).astype("float32")
    mean, std = mc_predict(model, x, samples=400)
    draws = np.stack([model.predict(x, verbose=0) for _ in range(100)])
    # Two Monte Carlo estimates of the same mean: their difference has
    # standard error std * sqrt(1/400 + 1/100).
    assert np.all(np.abs(mean - draws.mean(axis=0)) < 5 * std * np.sqrt(1 / 400 + 1 / 100) + 1e-5)
    np.testing.assert_allclose(std, draws.std(axis=0), rtol=0.25)


def test_deterministic_model_has_zero_spread():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                              keras.layers.Dropout(0.5)])
    x = np.random.normal(size=(10, 3)).astype("float32")
    mean, std = mc_predict(model, x, samples=7)
    np.testing.assert_allclose(mean, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    # Zero up to float32 rounding of the mean of identical values.
    assert np.all(std <= 1e-6 * (1 + np.abs(mean)))


def test_several_inputs_and_outputs():
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    hidden = MCDropout(0.5, seed=2)(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, {"y": keras.layers.Dense(3, name="y")(hidden),
                                           "z": keras.layers.Dense(1, name="z")(hidden)})
    x = {"a": np.ones((9, 4), "float32"), "b": np.ones((9, 2), "float32")}
    mean, std = mc_predict(model, x, samples=5, batch_size=4)
    reference = model.predict(x, verbose=0)
    assert {k: v.shape for k, v in mean.items()} == {k: v.shape for k, v in reference.items()}
    assert {k: v.shape for k, v in std.items()} == {"y": (9, 3), "z": (9, 1)}
    assert all(np.all(v > 0) for v in std.values())


def test_list_outputs():
    inputs = keras.Input((3,))
    hidden = MCDropout(0.5, seed=3)(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2)(hidden), keras.layers.Dense(4)(hidden)])
    mean, std = mc_predict(model, np.ones((6, 3), "float32"), samples=3)
    assert [m.shape for m in mean] == [(6, 2), (6, 4)]
    assert [s.shape for s in std] == [(6, 2), (6, 4)]


class BatchRows(keras.layers.Layer):
    """Records the largest number of rows a forward pass gave it."""

    def __init__(self):
        super().__init__()
        self.rows = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x):
        rows = keras.ops.cast(keras.ops.shape(x)[0], "float32")
        self.rows.assign(keras.ops.maximum(self.rows, rows))
        return x


def test_samples_are_drawn_in_one_batched_pass():
    probe = BatchRows()
    model = keras.Sequential([keras.Input((3,)), probe, MCDropout(0.5)])
    mc_predict(model, np.ones((8, 3), "float32"), samples=30, batch_size=8)
    assert float(keras.ops.convert_to_numpy(probe.rows)) == 30 * 8


def test_fresh_masks_on_each_call_and_compiled_step_reused(monkeypatch):
    # Every `predict` that runs, and the compiled step it ran.
    steps = []
    predict = keras.Model.predict

    def spy(self, *args, **kwargs):
        result = predict(self, *args, **kwargs)
        steps.append(self.predict_function)
        return result

    monkeypatch.setattr(keras.Model, "predict", spy)
    model = sum_model(50, 0.5, seed=4)
    x = np.ones((4, 50), "float32")
    first, _ = mc_predict(model, x, samples=10)
    second, _ = mc_predict(model, x, samples=10)
    assert not np.array_equal(first, second)
    assert len(steps) == 2 and steps[0] is not None and steps[1] is steps[0]


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(samples=0), ValueError, r"`samples`: expected an int >= 1. Received: samples=0"),
        (dict(samples=2.5), TypeError, r"`samples`: expected an int"),
        (dict(samples=True), TypeError, r"`samples`"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mc_predict(sum_model(3, 0.1), np.ones((2, 3)), **kwargs)


def test_refuses_non_models_and_unbuilt_models():
    with pytest.raises(TypeError, match="`model`: expected a keras.Model"):
        mc_predict(lambda x: x, np.ones((2, 3)))
    with pytest.raises(ValueError, match="built model"):
        mc_predict(keras.Sequential([keras.layers.Dense(1)]), np.ones((2, 3)))


def test_top_level_access():
    assert kr.uncertainty.mc_predict is mc_predict
    # Where earlier versions had it, kept for compatibility.
    assert kr.utils.mc_predict is kr.uncertainty.mc_predict
