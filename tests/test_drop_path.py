"""DropPath / StochasticDepth: whole samples dropped, live schedules, saving."""

import keras
import numpy as np
import pytest
from conftest import BAD_RATES
from conftest import PROPERTY
from conftest import RATE_ARGS
from conftest import SEEDS
from conftest import assert_config_round_trips
from conftest import StepLosses
from conftest import fit_under_policy
from conftest import jit_compile_options
from conftest import resume_in_fresh_process
from hypothesis import given

import keras_regx as kr
from keras_regx import schedules
from keras_regx.callbacks import RegularizationScheduler
from keras_regx.layers import DropPath

RATES = {"float": 0.25, "scheduled": schedules.Linear(0.25, 0.5, begin_step=3, end_step=6)}
EAGER = pytest.mark.filterwarnings("ignore:.*no `keras_regx.callbacks.Regulari")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@EAGER
@pytest.mark.parametrize("kind", RATES)
@pytest.mark.parametrize("shape", [(20000, 3), (5000, 2, 3, 2)])
def test_whole_samples_dropped_with_probability_rate(kind, shape):
    y = numpy(DropPath(RATES[kind], seed=0)(np.ones(shape, "float32"), training=True))
    flat = y.reshape(shape[0], -1)
    p, n = 0.25, shape[0]
    # Every sample is all zeros or all 1 / (1 - p).
    assert np.all((flat == 0).all(axis=1) | np.isclose(flat, 1 / (1 - p)).all(axis=1))
    dropped = (flat[:, 0] == 0).mean()
    # 5 standard errors of a Bernoulli mean over n samples.
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(flat[:, 0].mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)


@pytest.mark.parametrize("kind", RATES)
def test_identity_at_inference(kind):
    x = np.random.normal(size=(4, 3, 5)).astype("float32")
    np.testing.assert_array_equal(numpy(DropPath(RATES[kind])(x)), x)


@EAGER
@pytest.mark.parametrize("kind", RATES)
def test_seeds(kind):
    x = np.ones((64, 4), "float32")
    a, b = DropPath(RATES[kind], seed=3), DropPath(RATES[kind], seed=3)
    first = numpy(a(x, training=True))
    np.testing.assert_array_equal(first, numpy(b(x, training=True)))
    assert not np.array_equal(first, numpy(a(x, training=True)))


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_schedule_is_live_in_fit(jit_compile):
    # Loss mean(out ** 2) over a batch of n one-unit samples of ones:
    # expectation 1 / (1 - p), standard error sqrt(p / (1 - p) ** 3 / n).
    ramp = schedules.Linear(0.0, 0.5, end_step=7)
    model = keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(1, use_bias=False, kernel_initializer="ones"),
        DropPath(ramp, seed=2, name="path"),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    batch = 20000
    steps = StepLosses()
    history = model.fit(np.ones((8 * batch, 1)), np.zeros((8 * batch, 1)), batch_size=batch,
                        verbose=0, shuffle=False, callbacks=[RegularizationScheduler(), steps])
    rates = np.array([ramp.value_at(s) for s in range(8)])
    tolerance = 5 * np.sqrt(rates / (1 - rates) ** 3 / batch) + 1e-5
    np.testing.assert_array_less(np.abs(np.array(steps.losses) - 1 / (1 - rates)), tolerance)
    assert history.history["path/rate"] == [pytest.approx(0.5)]


def residual_model(rate):
    inputs = keras.Input((6,))
    branch = keras.layers.Dense(6, activation="relu", name="branch")(inputs)
    outputs = keras.layers.Add()([inputs, DropPath(rate, seed=1, name="path")(branch)])
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(outputs))


def test_residual_model_trains_and_round_trips(tmp_path):
    ramp = schedules.Cosine(0.0, 0.3, end_step=8)
    model = residual_model(ramp)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.random.normal(size=(16, 6)).astype("float32")
    model.fit(x, np.ones((16, 1)), batch_size=4, verbose=0, callbacks=[RegularizationScheduler()])
    expected, got = resume_in_fresh_process(model, x, np.ones((16, 1)), tmp_path, "path", 4)
    np.testing.assert_allclose(got["outputs"], expected, rtol=1e-6)
    assert got["rate"] == pytest.approx(ramp.value_at(3))
    assert got["logged"] == [pytest.approx(ramp.value_at(7))]


@pytest.mark.parametrize("kind", RATES)
def test_config_round_trip(kind):
    layer = DropPath(RATES[kind], seed=4, name="p")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is DropPath
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(rate=1.0), ValueError, r"`rate`: expected a float >= 0.0 and < 1.0. Received: rate=1.0"),
        (dict(rate=-1), ValueError, r"`rate`"),
        (dict(rate=None), TypeError, r"`rate`: expected a float or a schedule .*Received: rate=None"),
        (dict(rate=0.1, seed=1.5), TypeError, r"`seed`"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DropPath(**kwargs)


def test_stochastic_depth_is_drop_path():
    assert kr.layers.StochasticDepth is DropPath is kr.layers.DropPath


# Config round trips for random valid arguments (hypothesis).

@PROPERTY
@given(rate=RATE_ARGS, seed=SEEDS, bad=BAD_RATES)
def test_config_round_trips_for_random_arguments(rate, seed, bad):
    layer = DropPath(rate, seed=seed)
    assert_config_round_trips(layer)
    with pytest.raises(ValueError, match="`rate`"):
        DropPath.from_config({**layer.get_config(), "rate": bad})


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_the_compute_dtype_and_a_live_float32_rate(policy, jit_compile):
    # The scheduled rate stays a float32 variable (not autocast), the output
    # keeps the policy's compute dtype, and the schedule is live.
    dtype, rates, losses = fit_under_policy(
        policy, lambda rate: kr.layers.DropPath(rate, seed=1), (12,), jit_compile)
    assert dtype == policy.split("_")[1]
    assert rates == pytest.approx([0.1 + 0.3 * 1 / 3, 0.1 + 0.3 * 3 / 3])
    assert np.isfinite(losses).all()
