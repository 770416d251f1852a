"""ScheduledDropout and MCDropout: statistics, live schedules, seeds, saving."""

import re

import keras
import numpy as np
import pytest
from conftest import BAD_RATES
from conftest import NEAR_ONE
from conftest import PROPERTY
from conftest import RATE_ARGS
from conftest import SEEDS
from conftest import assert_config_round_trips
from conftest import StepLosses
from conftest import fit_under_policy
from conftest import fit_near_one
from conftest import global_policy
from conftest import jit_compile_options
from conftest import resume_in_fresh_process
from hypothesis import given
from hypothesis import strategies as st

import keras_regx as kr
from keras_regx import schedules
from keras_regx.callbacks import RegularizationScheduler
from keras_regx.layers import MCDropout
from keras_regx.layers import ScheduledDropout

LAYERS = [ScheduledDropout, MCDropout]
# A float rate runs Keras' kernels, a scheduled one our mask code: test both.
RATES = {"float": 0.3, "scheduled": schedules.Linear(0.3, 0.9, begin_step=5, end_step=10)}
# Calling a scheduled layer in training mode outside `fit()` warns that no
# scheduler drives it (tested below); the eager statistical tests expect that.
EAGER = pytest.mark.filterwarnings("ignore:.*no `keras_regx.callbacks.Regulari")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def sigma_of_mean(p, n):
    """Standard error of the mean of n draws of Bernoulli(1 - p) / (1 - p)."""
    return np.sqrt(p / (1 - p) / n)


@EAGER
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kind", RATES)
def test_drop_fraction_and_mean(cls, kind):
    layer = cls(RATES[kind], seed=0)
    x = np.ones((200, 500), "float32")
    y = numpy(layer(x, training=True))
    n, p = x.size, 0.3
    dropped = (y == 0).mean()
    # 5 standard errors: a false failure about once in 1.7 million runs.
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - 1.0) < 5 * sigma_of_mean(p, n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-6)


@EAGER
@pytest.mark.parametrize("kind", RATES)
def test_noise_shape_broadcasts_the_mask(kind):
    layer = ScheduledDropout(RATES[kind], noise_shape=(None, 1), seed=0)
    y = numpy(layer(np.ones((400, 7), "float32"), training=True))
    assert all(len(set(row)) == 1 for row in y.tolist())  # one draw per row
    assert 0.2 < (y[:, 0] == 0).mean() < 0.4


@pytest.mark.parametrize("kind", RATES)
def test_scheduled_dropout_is_identity_at_inference(kind):
    x = np.random.normal(size=(8, 5)).astype("float32")
    layer = ScheduledDropout(RATES[kind])
    np.testing.assert_array_equal(numpy(layer(x)), x)
    np.testing.assert_array_equal(numpy(layer(x, training=False)), x)


@pytest.mark.parametrize("training", [None, False])
def test_mc_dropout_drops_at_inference(training):
    y = numpy(MCDropout(0.5, seed=0)(np.ones((100, 100), "float32"), training=training))
    assert abs((y == 0).mean() - 0.5) < 5 * np.sqrt(0.25 / y.size)


@EAGER
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kind", RATES)
def test_seeds(cls, kind):
    x = np.ones((20, 50), "float32")
    a, b = cls(RATES[kind], seed=7), cls(RATES[kind], seed=7)
    first_a, first_b = numpy(a(x, training=True)), numpy(b(x, training=True))
    np.testing.assert_array_equal(first_a, first_b)  # same seed, same masks
    assert not np.array_equal(first_a, numpy(a(x, training=True)))  # fresh masks
    assert not np.array_equal(first_a, numpy(cls(RATES[kind], seed=8)(x, training=True)))


def mse_model(layer, units=500, jit_compile="auto"):
    """Identity kernel (frozen by lr = 0), then `layer`; trained on ones vs zeros.

    The loss is mean(out ** 2), whose expectation under inverted dropout at
    rate p is 1 / (1 - p).
    """
    model = keras.Sequential([
        keras.Input((units,)),
        keras.layers.Dense(units, use_bias=False, kernel_initializer="identity"),
        layer,
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    return model


RAMP = schedules.Linear(0.0, 0.5, end_step=9)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_schedule_is_live_in_fit(cls, jit_compile):
    model = mse_model(cls(RAMP, seed=1, name="drop"), jit_compile=jit_compile)
    steps = StepLosses()
    batch, units = 40, 500
    x, y = np.ones((10 * batch, units), "float32"), np.zeros((10 * batch, units), "float32")
    history = model.fit(x, y, batch_size=batch, verbose=0, shuffle=False,
                        callbacks=[RegularizationScheduler(), steps])
    rates = np.array([RAMP.value_at(s) for s in range(10)])
    # out ** 2 is 0 or 1 / (1 - p) ** 2: mean 1 / (1 - p), variance p / (1 - p) ** 3.
    tolerance = 5 * np.sqrt(rates / (1 - rates) ** 3 / (batch * units)) + 1e-5
    np.testing.assert_array_less(np.abs(np.array(steps.losses) - 1 / (1 - rates)), tolerance)
    assert history.history["drop/rate"] == [pytest.approx(RAMP.value_at(9))]


def test_epoch_update_freq():
    model = mse_model(ScheduledDropout(RAMP, seed=1, name="drop"))
    x, y = np.ones((40, 500), "float32"), np.zeros((40, 500), "float32")
    history = model.fit(x, y, batch_size=20, epochs=3, verbose=0,
                        callbacks=[RegularizationScheduler("epoch")])
    assert history.history["drop/rate"] == pytest.approx([RAMP.value_at(s) for s in (0, 2, 4)])


def test_forgotten_scheduler_warns():
    model = mse_model(ScheduledDropout(RAMP), units=4)
    with pytest.warns(UserWarning, match="RegularizationScheduler"):
        model.fit(np.ones((4, 4)), np.zeros((4, 4)), batch_size=2, verbose=0)


def test_schedule_leaving_the_rate_range_is_refused():
    model = mse_model(ScheduledDropout(schedules.Linear(0.5, 1.5, end_step=4)), units=4)
    with pytest.raises(ValueError, match=r"`rate`.*left the valid range at step 2.*< 1"):
        model.fit(np.ones((8, 4)), np.zeros((8, 4)), batch_size=2, verbose=0,
                  callbacks=[RegularizationScheduler()])


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kind", RATES)
def test_config_round_trip(cls, kind):
    layer = cls(RATES[kind], noise_shape=(None, 1), seed=3, name="d")
    config = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is cls
    assert restored.get_config() == layer.get_config()
    assert restored.scheduled_hyperparameters == layer.scheduled_hyperparameters


def test_keras_schedule_as_rate():
    rate = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.1, 0.4])
    layer = ScheduledDropout(rate)
    restored = ScheduledDropout.from_config(layer.get_config())
    # The schedule it holds, as its config serializes it.
    held = restored.get_config()["rate"]
    assert held["class_name"] == "PiecewiseConstantDecay"
    assert held["config"] == rate.get_config()
    assert float(numpy(restored.rate)) == pytest.approx(0.1)


def test_save_load_in_fresh_process_and_resume(tmp_path):
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, name="dense"),
        ScheduledDropout(RAMP, name="drop"),
        MCDropout(0.2, seed=5, name="mc"),
        keras.layers.Dense(1, name="head"),
    ])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.random.normal(size=(12, 6)).astype("float32")
    model.fit(x, np.zeros((12, 1)), batch_size=3, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler()])
    # MCDropout draws from its seed generator, whose state is saved too.
    expected, got = resume_in_fresh_process(model, x, np.zeros((12, 1)), tmp_path, "drop", 3)
    np.testing.assert_allclose(got["outputs"], expected, rtol=1e-6)
    assert got["rate"] == pytest.approx(RAMP.value_at(3))  # last step of the first fit
    assert got["logged"] == [pytest.approx(RAMP.value_at(7))]  # steps 4..7


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(rate=1.0), ValueError, r"`rate`: expected a float >= 0.0 and < 1.0. Received: rate=1.0"),
        (dict(rate=-0.1), ValueError, r"`rate`.*Received: rate=-0.1"),
        (dict(rate=float("nan")), ValueError, r"`rate`: expected a finite float"),
        (dict(rate="0.5"), TypeError, r"`rate`: expected a float or a schedule"),
        (dict(rate=0.5, seed="1"), TypeError, r"`seed`: expected an int or None"),
        (dict(rate=0.5, noise_shape="ab"), ValueError, r"`noise_shape`"),
        (dict(rate=0.5, noise_shape=(None, 0)), ValueError, r"`noise_shape`.*positive"),
    ],
)
def test_bad_input(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kwargs)


@EAGER
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kind", RATES)
@pytest.mark.parametrize("noise_shape", [(None, 1), (None, 1, 1, 1), (None, 2, 1), (3, 1, 1)])
def test_noise_shape_that_does_not_fit_the_inputs_is_refused(cls, kind, noise_shape):
    # The same error with a float rate (Keras' kernels) and a scheduled one
    # (our mask code), in either mode, and when a model is built if the
    # shapes known then disagree (here all but the batch size).
    match = (r"Invalid value for argument `noise_shape`: expected a tuple with one "
             r"entry per input axis \(3 for inputs of shape \((\d+|None), 3, 4\)\), each None, 1 "
             r"or the axis' size. Received: noise_shape=" + re.escape(repr(noise_shape)))
    for training in (True, False):
        with pytest.raises(ValueError, match=match):
            cls(RATES[kind], noise_shape=noise_shape)(np.ones((2, 3, 4), "float32"),
                                                      training=training)
    if noise_shape[0] is None:
        with pytest.raises(ValueError, match=match):
            keras.Sequential([keras.Input((3, 4)), cls(RATES[kind], noise_shape=noise_shape)])


@EAGER
@pytest.mark.parametrize("kind", RATES)
@pytest.mark.parametrize("noise_shape", [(None, 1, 4), (2, None, 1), (1, 1, 1)])
def test_noise_shape_that_fits_is_accepted(kind, noise_shape):
    y = numpy(ScheduledDropout(RATES[kind], noise_shape=noise_shape, seed=0)(
        np.ones((2, 3, 4), "float32"), training=True))
    for axis, size in enumerate(noise_shape):
        if size == 1:  # one draw along this axis
            assert (np.diff(y, axis=axis) == 0).all()


def test_top_level_access():
    assert kr.layers.ScheduledDropout is ScheduledDropout
    assert kr.layers.MCDropout is MCDropout


# Config round trips for random valid arguments (hypothesis).

NOISE_SHAPES = st.one_of(
    st.none(), st.lists(st.one_of(st.none(), st.integers(1, 8)), max_size=4).map(tuple)
)


@pytest.mark.parametrize("cls", LAYERS)
@PROPERTY
@given(rate=RATE_ARGS, noise_shape=NOISE_SHAPES, seed=SEEDS, bad=BAD_RATES)
def test_config_round_trips_for_random_arguments(cls, rate, noise_shape, seed, bad):
    layer = cls(rate, noise_shape=noise_shape, seed=seed)
    assert_config_round_trips(layer)
    with pytest.raises(ValueError, match="`rate`"):
        cls.from_config({**layer.get_config(), "rate": bad})


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_the_compute_dtype_and_a_live_float32_rate(
        policy, jit_compile, cls):
    # The scheduled rate stays a float32 variable (not autocast), the output
    # keeps the policy's compute dtype, and the schedule is live.
    dtype, rates, losses = fit_under_policy(
        policy, lambda rate: cls(rate, seed=1), (12,), jit_compile)
    assert dtype == policy.split("_")[1]
    assert rates == pytest.approx([0.1 + 0.3 * 1 / 3, 0.1 + 0.3 * 3 / 3])
    assert np.isfinite(losses).all()


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("policy,rate", NEAR_ONE)
@pytest.mark.parametrize("make", [ScheduledDropout, MCDropout, kr.layers.DropPath],
                         ids=["scheduled", "mc", "drop-path"])
def test_a_rate_whose_scale_overflows_drops_everything(make, policy, rate, jit_compile):
    with global_policy(policy):
        layer = make(rate, seed=0)
        hidden = keras.layers.Dense(64)
        model = keras.Sequential([keras.Input((8,)), hidden, layer,
                                  keras.layers.Dense(1, dtype="float32")])
        kernel = keras.ops.convert_to_numpy(hidden.kernel)
        fit_near_one(model, np.ones((16, 8), "float32"), policy, jit_compile)
        y = keras.ops.convert_to_numpy(layer(np.ones((4, 64), "float32"), training=True))
    np.testing.assert_array_equal(y, 0.0)
    # Nothing reaches the layer below: its kernel did not move.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(hidden.kernel), kernel)
