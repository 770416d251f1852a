"""DropConnectDense: the dense map at inference, weight masks in training."""

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
from keras_regx.layers import DropConnectDense

RATES = {"float": 0.4, "scheduled": schedules.Linear(0.4, 0.8, begin_step=3, end_step=6)}
EAGER = pytest.mark.filterwarnings("ignore:.*no `keras_regx.callbacks.Regulari")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("kind", RATES)
def test_inference_is_exactly_the_dense_map(kind):
    layer = DropConnectDense(5, rate=RATES[kind], activation="tanh", seed=0)
    dense = keras.layers.Dense(5, activation="tanh")
    x = np.random.normal(size=(7, 4)).astype("float32")
    layer.build((None, 4))
    dense.build((None, 4))
    dense.set_weights([numpy(layer.kernel), numpy(layer.bias)])
    np.testing.assert_array_equal(numpy(layer(x)), numpy(dense(x)))
    np.testing.assert_array_equal(numpy(layer(x, training=False)), numpy(dense(x)))


@EAGER
@pytest.mark.parametrize("kind", RATES)
def test_training_masks_weights(kind):
    units, d, p = 300, 200, 0.4
    layer = DropConnectDense(units, rate=RATES[kind], use_bias=False,
                             kernel_initializer="ones", seed=1)
    # With identity inputs each output row is a row of the masked kernel;
    # two copies of the batch show that its samples share one mask.
    x = np.concatenate([np.eye(d), np.eye(d)]).astype("float32")
    y = numpy(layer(x, training=True))
    np.testing.assert_array_equal(y[:d], y[d:])
    masked = y[:d]
    n = masked.size
    # 5 standard errors of the dropped fraction and of the mean.
    assert abs((masked == 0).mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(masked[masked != 0], 1 / (1 - p), rtol=1e-6)
    assert abs(masked.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert not np.array_equal(masked, numpy(layer(x[:d], training=True)))  # fresh mask


@EAGER
def test_expected_output_is_the_dense_map():
    layer = DropConnectDense(3, rate=0.5, seed=2, bias_initializer="ones")
    x = np.random.normal(size=(4, 6)).astype("float32")
    exact = numpy(layer(x))
    draws = np.stack([numpy(layer(x, training=True)) for _ in range(400)])
    # Each draw's output is a sum of 6 terms x_i * w_ij * B / (1 - p):
    # its variance is p / (1 - p) * sum_i (x_i * w_ij) ** 2.
    kernel = numpy(layer.kernel)
    sigma = np.sqrt((0.5 / 0.5) * (x[:, :, None] ** 2 * kernel[None] ** 2).sum(axis=1) / 400)
    assert np.all(np.abs(draws.mean(axis=0) - exact) < 5 * sigma + 1e-6)


@EAGER
@pytest.mark.parametrize("drop_bias", [False, True])
def test_drop_bias(drop_bias):
    layer = DropConnectDense(4000, rate=0.5, drop_bias=drop_bias,
                             kernel_initializer="zeros", bias_initializer="ones", seed=3)
    y = numpy(layer(np.zeros((1, 2), "float32"), training=True))
    if drop_bias:
        assert abs((y == 0).mean() - 0.5) < 5 * np.sqrt(0.25 / y.size)
        assert set(np.unique(y).tolist()) == {0.0, 2.0}
    else:
        np.testing.assert_array_equal(y, 1.0)


@EAGER
@pytest.mark.parametrize("kind", RATES)
def test_seeds(kind):
    x = np.eye(8, dtype="float32")
    a = DropConnectDense(8, rate=RATES[kind], seed=5)
    b = DropConnectDense(8, rate=RATES[kind], seed=5)
    b.build((None, 8))
    a.build((None, 8))
    b.set_weights(a.get_weights())
    first = numpy(a(x, training=True))
    np.testing.assert_array_equal(first, numpy(b(x, training=True)))
    assert not np.array_equal(first, numpy(a(x, training=True)))


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_schedule_is_live_in_fit(jit_compile):
    # Kernel of ones, identity inputs: the outputs are the masked kernel, so
    # mean(out ** 2) has expectation 1 / (1 - p) over d * d weights.
    d = 300
    ramp = schedules.Linear(0.0, 0.5, end_step=7)
    model = keras.Sequential([
        keras.Input((d,)),
        DropConnectDense(d, rate=ramp, use_bias=False, kernel_initializer="ones",
                         seed=4, name="dc"),
    ])
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    x = np.tile(np.eye(d, dtype="float32"), (8, 1))
    steps = StepLosses()
    history = model.fit(x, np.zeros_like(x), batch_size=d, verbose=0, shuffle=False,
                        callbacks=[RegularizationScheduler(), steps])
    rates = np.array([ramp.value_at(s) for s in range(8)])
    tolerance = 5 * np.sqrt(rates / (1 - rates) ** 3 / d**2) + 1e-5
    np.testing.assert_array_less(np.abs(np.array(steps.losses) - 1 / (1 - rates)), tolerance)
    assert history.history["dc/rate"] == [pytest.approx(0.5)]


def test_save_load_in_fresh_process_and_resume(tmp_path):
    ramp = schedules.Linear(0.1, 0.5, end_step=10)
    model = keras.Sequential([
        keras.Input((5,)),
        DropConnectDense(8, rate=ramp, activation="relu", seed=6, name="dc",
                         kernel_regularizer=kr.L2(1e-3)),
        keras.layers.Dense(1, name="head"),
    ])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.random.normal(size=(12, 5)).astype("float32")
    model.fit(x, np.ones((12, 1)), batch_size=3, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler()])
    expected, got = resume_in_fresh_process(model, x, np.ones((12, 1)), tmp_path, "dc", 3)
    np.testing.assert_allclose(got["outputs"], expected, rtol=1e-6)
    assert got["rate"] == pytest.approx(ramp.value_at(3))
    assert got["logged"] == [pytest.approx(ramp.value_at(7))]


@pytest.mark.parametrize("kind", RATES)
def test_config_round_trip(kind):
    layer = DropConnectDense(3, rate=RATES[kind], activation="relu", drop_bias=True,
                             seed=7, kernel_initializer="he_normal", name="dc")
    config = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is DropConnectDense
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(rate=1.0), ValueError, r"`rate`: expected a float >= 0.0 and < 1.0. Received: rate=1.0"),
        (dict(rate=float("inf")), ValueError, r"`rate`: expected a finite float"),
        (dict(rate=[0.1]), TypeError, r"`rate`"),
        (dict(drop_bias="no"), TypeError, r"`drop_bias`: expected a bool"),
        (dict(seed="s"), TypeError, r"`seed`"),
        (dict(units=0), ValueError, r"`units`"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DropConnectDense(**{"units": 2, **kwargs})


def test_quantize_is_refused():
    layer = DropConnectDense(2)
    layer.build((None, 3))
    with pytest.raises(NotImplementedError, match="keras.layers.Dense"):
        layer.quantize("int8")


# Config round trips for random valid arguments (hypothesis).

@PROPERTY
@given(
    units=st.integers(1, 64),
    rate=RATE_ARGS,
    activation=st.sampled_from([None, "relu", "tanh", "sigmoid"]),
    use_bias=st.booleans(),
    drop_bias=st.booleans(),
    seed=SEEDS,
    initializer=st.sampled_from(["glorot_uniform", "zeros", "he_normal"]),
    regularizer=st.one_of(st.none(), st.builds(kr.regularizers.L2, st.floats(0.0, 1.0))),
    bad=BAD_RATES,
)
def test_config_round_trips_for_random_arguments(
    units, rate, activation, use_bias, drop_bias, seed, initializer, regularizer, bad
):
    layer = DropConnectDense(units, rate=rate, activation=activation, use_bias=use_bias,
                             drop_bias=drop_bias, seed=seed, kernel_initializer=initializer,
                             kernel_regularizer=regularizer)
    assert_config_round_trips(layer)
    with pytest.raises(ValueError, match="`rate`"):
        DropConnectDense.from_config({**layer.get_config(), "rate": bad})


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_the_compute_dtype_and_a_live_float32_rate(policy, jit_compile):
    # The scheduled rate stays a float32 variable (not autocast), the output
    # keeps the policy's compute dtype, and the schedule is live.
    dtype, rates, losses = fit_under_policy(
        policy, lambda rate: kr.layers.DropConnectDense(6, rate=rate, seed=1), (12,), jit_compile)
    assert dtype == policy.split("_")[1]
    assert rates == pytest.approx([0.1 + 0.3 * 1 / 3, 0.1 + 0.3 * 3 / 3])
    assert np.isfinite(losses).all()


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("policy,rate", NEAR_ONE)
def test_a_rate_whose_scale_overflows_drops_every_weight(policy, rate, jit_compile):
    # A million weights: a few of them would be kept at 1 - rate = 1e-5.
    d = 1000
    with global_policy(policy):
        layer = DropConnectDense(d, rate=rate, drop_bias=False, seed=0, name="dc")
        model = keras.Sequential([keras.Input((d,)), layer, keras.layers.Dense(1, dtype="float32")])
        kernel = numpy(layer.kernel)
        x = np.ones((16, d), "float32")
        fit_near_one(model, x, policy, jit_compile)
        y = numpy(layer(x, training=True))
    # Every weight dropped: no gradient reaches the kernel, the output is the bias.
    np.testing.assert_array_equal(numpy(layer.kernel), kernel)
    np.testing.assert_array_equal(y, np.broadcast_to(numpy(layer.bias).astype(y.dtype), y.shape))
