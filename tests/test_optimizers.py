"""`keras_regx.optimizers.ScheduledWeightDecay`: Keras' decoupled weight decay,
its strength on a schedule, inside the compiled update of every backend."""

import keras
import numpy as np
import pytest

import keras_regx as kr
from conftest import BACKEND
from conftest import jit_compile_options
from keras_regx.optimizers import ScheduledWeightDecay

OPTIMIZERS = {
    "SGD": lambda **kw: keras.optimizers.SGD(0.01, momentum=0.9, **kw),
    "Adam": lambda **kw: keras.optimizers.Adam(0.01, **kw),
    "AdamW": lambda **kw: keras.optimizers.AdamW(0.01, **kw),
    "Lion": lambda **kw: keras.optimizers.Lion(0.001, **kw),
    "RMSprop": lambda **kw: keras.optimizers.RMSprop(0.01, **kw),
}


def _data(n=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], "float32") + 0.3).astype("float32")


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                             keras.layers.Dense(1)])


def _train(optimizer, epochs=10, batch_size=4, jit_compile="auto", callbacks=(), model=None):
    model = model or _mlp()
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    x, y = _data()
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=False,
                        callbacks=list(callbacks))
    return model, history


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_a_float_or_constant_equals_keras_weight_decay_bit_for_bit(name, jit_compile):
    # 100 updates (10 epochs of 10 batches).
    make = OPTIMIZERS[name]
    reference, _ = _train(make(weight_decay=0.05), jit_compile=jit_compile)
    for weight_decay in (0.05, kr.schedules.Constant(0.05)):
        model, _ = _train(ScheduledWeightDecay(make(), weight_decay), jit_compile=jit_compile)
        for got, want in zip(model.get_weights(), reference.get_weights()):
            np.testing.assert_array_equal(got, want)


def _numpy_sgd(schedule, steps, lr, batch_size, accumulate=1):
    """The reference: SGD on a linear model with MSE, decoupled decay first.

    Keras computes the gradient at the weights of the batch, then decays the
    weights (`w -= lr * wd_t * w`) and applies the gradient step; with
    accumulation, the mean gradient of `accumulate` batches at every
    `accumulate`-th batch.
    """
    x, y = _data()
    w = np.array([[0.5], [0.25], [-0.5]]), np.array([0.1])
    w, b = w[0].astype("float64"), w[1].astype("float64")
    gw_sum, gb_sum, update = 0.0, 0.0, 0
    for batch in range(steps):
        i = batch % (len(x) // batch_size)
        xb, yb = x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size]
        err = xb @ w + b - yb
        gw_sum = gw_sum + 2.0 * xb.T @ err / len(xb)
        gb_sum = gb_sum + 2.0 * err.mean(axis=0)
        if (batch + 1) % accumulate:
            continue
        wd = kr.schedules.value_at(schedule, update)
        w = w - lr * wd * w
        b = b - lr * wd * b
        w, b = w - lr * gw_sum / accumulate, b - lr * gb_sum / accumulate
        gw_sum, gb_sum, update = 0.0, 0.0, update + 1
    return w, b


def _linear():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        1, kernel_initializer=keras.initializers.Constant([[0.5], [0.25], [-0.5]]),
        bias_initializer=keras.initializers.Constant(0.1))])
    return model


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_schedule_follows_the_numpy_rule_step_by_step(jit_compile, accumulate):
    schedule = kr.schedules.Cosine(0.5, 0.05, end_step=12)
    kwargs = {"gradient_accumulation_steps": accumulate} if accumulate > 1 else {}
    optimizer = ScheduledWeightDecay(keras.optimizers.SGD(0.1, **kwargs), schedule)
    model, _ = _train(optimizer, epochs=3, batch_size=4, jit_compile=jit_compile, model=_linear())
    steps = 3 * 10
    w, b = _numpy_sgd(schedule, steps, lr=0.1, batch_size=4, accumulate=accumulate)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(kernel, w, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(bias, b, rtol=2e-5, atol=2e-6)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == steps // accumulate


def test_exclude_from_weight_decay_is_honoured():
    schedule = kr.schedules.Linear(0.0, 1.0, end_step=4)
    model = _mlp()
    optimizer = ScheduledWeightDecay(keras.optimizers.SGD(0.5), schedule)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    model.compile(optimizer, "mse")
    optimizer.build(model.trainable_variables)
    before = model.get_weights()
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    for _ in range(3):
        optimizer.apply(zeros, model.trainable_variables)
    factor = (1 - 0.5 * 0.0) * (1 - 0.5 * 0.25) * (1 - 0.5 * 0.5)
    for variable, old in zip(model.trainable_variables, before):
        want = old if "bias" in variable.name else old * factor
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), want, rtol=1e-6)


def test_save_load_and_resume_mid_schedule(tmp_path):
    schedule = kr.schedules.Linear(0.5, 0.0, end_step=30)
    straight, _ = _train(ScheduledWeightDecay(keras.optimizers.Adam(0.01), schedule), epochs=4)
    first, _ = _train(ScheduledWeightDecay(keras.optimizers.Adam(0.01), schedule), epochs=2)
    path = str(tmp_path / "model.keras")
    first.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.optimizer, ScheduledWeightDecay)
    assert loaded.optimizer.get_config() == first.optimizer.get_config()
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 20
    x, y = _data()
    loaded.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    for got, want in zip(loaded.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_clone():
    for weight_decay in (0.01, kr.schedules.Cosine(0.04, 0.4, end_step=100),
                         keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)):
        optimizer = ScheduledWeightDecay(keras.optimizers.Lion(1e-4), weight_decay, name="wd")
        config = keras.saving.serialize_keras_object(optimizer)
        again = keras.saving.deserialize_keras_object(config)
        assert type(again) is ScheduledWeightDecay and again.name == "wd"
        assert again.get_config() == optimizer.get_config()
        assert isinstance(again.inner_optimizer, keras.optimizers.Lion)


def test_inside_a_loss_scale_optimizer_the_weights_are_the_same():
    schedule = kr.schedules.Linear(0.2, 0.0, end_step=50)
    plain, _ = _train(ScheduledWeightDecay(keras.optimizers.Adam(0.01), schedule), epochs=3)
    scaled, _ = _train(keras.optimizers.LossScaleOptimizer(
        ScheduledWeightDecay(keras.optimizers.Adam(0.01), schedule)), epochs=3)
    # A power-of-two loss scale divides out exactly: the same weights.
    for got, want in zip(scaled.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("update_freq", ["batch", "epoch"])
def test_the_scheduler_logs_and_checks_the_value(update_freq):
    schedule = kr.schedules.Linear(0.0, 0.3, end_step=30)
    _, history = _train(ScheduledWeightDecay(keras.optimizers.SGD(0.01), schedule), epochs=3,
                        callbacks=[kr.callbacks.RegularizationScheduler(update_freq=update_freq)])
    # Each epoch logs the value of its last update (steps 9, 19, 29): the
    # optimizer moves it at every update, whatever `update_freq` says.
    np.testing.assert_allclose(history.history["weight_decay"], [0.09, 0.19, 0.29], rtol=1e-6)
    # A Keras schedule that turns negative is refused at the step it does.
    falling = keras.optimizers.schedules.PolynomialDecay(0.1, 5, end_learning_rate=-0.1)
    with pytest.raises(ValueError, match=r"`weight_decay`.*>= 0 and finite.*at step 3"):
        _train(ScheduledWeightDecay(keras.optimizers.SGD(0.01), falling),
               callbacks=[kr.callbacks.RegularizationScheduler(update_freq=update_freq)])


def test_plot_history_draws_weight_decay_with_the_strengths():
    pytest.importorskip("matplotlib")
    figure = kr.plotting.plot_history({"loss": [1.0, 0.5], "weight_decay": [0.1, 0.2],
                                       "reg/l2": [0.01, 0.02]})
    titles = [axis.get_title() for axis in figure.axes]
    assert len(titles) == 2
    strengths = figure.axes[1]
    assert sorted(line.get_label() for line in strengths.get_lines()) == ["reg/l2", "weight_decay"]


def test_proximal_steps_find_the_wrapped_optimizer():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        1, kernel_regularizer=kr.L1(1.5, proximal=True))])
    _train(ScheduledWeightDecay(keras.optimizers.Adam(0.05), 0.0), epochs=20, model=model,
           callbacks=[kr.callbacks.RegularizationScheduler()])
    assert np.sum(model.get_weights()[0] == 0.0) >= 1  # exact zeros: the proximal step ran


@pytest.mark.parametrize(
    "optimizer,weight_decay,exc,match",
    [
        ("adam", 0.1, TypeError, r"`optimizer`: expected a Keras 3 optimizer.*Received: optimizer='adam'"),
        (None, 0.1, TypeError, r"`optimizer`.*Received: optimizer=None"),
        (lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()), 0.1, ValueError,
         r"LossScaleOptimizer\(ScheduledWeightDecay"),
        (lambda: keras.optimizers.SGD(), -0.1, ValueError, r"`weight_decay`.*>= 0.*-0.1"),
        (lambda: keras.optimizers.SGD(), float("nan"), ValueError, r"`weight_decay`"),
        (lambda: keras.optimizers.SGD(), "0.1", TypeError, r"`weight_decay`: expected a float"),
        (lambda: keras.optimizers.SGD(), keras.optimizers.schedules.PolynomialDecay(
            -0.1, 5, end_learning_rate=0.1), ValueError, r"gave -0.1.* at step 0"),
    ],
)
def test_bad_input(optimizer, weight_decay, exc, match):
    optimizer = optimizer() if callable(optimizer) else optimizer
    with pytest.raises(exc, match=match):
        ScheduledWeightDecay(optimizer, weight_decay)


def test_top_level_access():
    assert kr.optimizers.ScheduledWeightDecay is ScheduledWeightDecay
    assert BACKEND in ("tensorflow", "jax", "torch")


def test_mixed_float16_inside_a_loss_scale_optimizer():
    # `compile` wraps the optimizer in a LossScaleOptimizer under
    # mixed_float16; the decay still reaches the float32 weights.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    norms = {}
    try:
        for weight_decay in (0.0, kr.schedules.Linear(0.5, 1.0, end_step=20)):
            model = _mlp()
            optimizer = ScheduledWeightDecay(keras.optimizers.SGD(0.05), weight_decay)
            model.compile(optimizer, "mse")
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            x, y = _data()
            model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
            weights = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
            assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in weights)
            # The loss scale skips the first updates, whose float16 gradients
            # overflow at its initial scale; the rest decay.
            assert 15 <= int(keras.ops.convert_to_numpy(optimizer.iterations)) <= 20
            norms[weight_decay == 0.0] = sum(float(np.sum(w ** 2)) for w in weights)
    finally:
        keras.config.set_dtype_policy(previous)
    # 15-20 updates shrinking by 1 - 0.05 * wd (wd 0.5 -> 1): the norm falls.
    assert norms[False] < 0.6 * norms[True]
