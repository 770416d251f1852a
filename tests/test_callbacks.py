"""The callbacks: RegularizationDriver (formerly RegularizationScheduler),
which drives scheduled strengths and rates during `fit()`, and
SparsityMonitor, which logs the sparsity of the weights and the weight
penalties. Each through a tiny real `model.fit`, reading what lands in
`History`, `CSVLogger` and the batch logs.

Resuming interrupted training is in test_saving.py, training under
distribution engines in test_distributed.py and custom training loops in
test_training_loops.py.
"""

import csv
import threading
import time
import warnings

import keras
import numpy as np
import pytest
from conftest import BACKEND
from conftest import L1_PENALTY
from conftest import L2_PENALTY
from conftest import RAMP
from conftest import W
from conftest import StepLosses
from conftest import jit_compile_options
from conftest import scheduled_eval_model
from conftest import zero_data_loss_model
from conftest import zeros

import keras_regx as kr
from keras_regx import regularizers
from keras_regx import schedules
from keras_regx.callbacks import RegularizationScheduler
from keras_regx.callbacks import SparsityMonitor
from keras_regx.sparsity import model_sparsity

# RegularizationDriver

COSINE = schedules.Join(
    [schedules.Linear(0.0, 0.5, end_step=4), schedules.Cosine(0.5, 0.1, end_step=8)],
    boundaries=[4],
)


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_l1_schedule_is_live_step_by_step(jit_compile):
    model = zero_data_loss_model(regularizers.L1(RAMP), jit_compile)
    steps = StepLosses()
    x, y = zeros(16)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler(), steps])
    expected = [RAMP.value_at(step) * L1_PENALTY for step in range(16)]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_elastic_net_two_schedules_are_live(jit_compile):
    reg = regularizers.ElasticNet(l1=RAMP, l2=COSINE)
    model = zero_data_loss_model(reg, jit_compile)
    steps = StepLosses()
    x, y = zeros(14)
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler(), steps])
    expected = [
        RAMP.value_at(s) * L1_PENALTY + COSINE.value_at(s) * L2_PENALTY
        for s in range(14)
    ]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(BACKEND == "torch", reason="Keras allows steps_per_execution > 1 only on TF and JAX")
def test_steps_per_execution_updates_once_per_execution():
    model = zero_data_loss_model(regularizers.L1(RAMP))
    model.compile(keras.optimizers.SGD(0.0), "mse", steps_per_execution=2)
    steps = StepLosses()  # one entry per execution: the mean of its two steps
    x, y = zeros(16)
    model.fit(x, y, batch_size=1, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler(), steps])
    # Each execution runs both of its steps at the value of its first step.
    expected = [RAMP.value_at(step) * L1_PENALTY for step in range(0, 16, 2)]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-4, atol=1e-5)


def test_gradient_accumulation_schedules_follow_updates_not_batches():
    # Keras counts updates in `optimizer.iterations`: with 3 batches per
    # update, the 3 batches of an update run at the value of the same step,
    # within an epoch and across epoch starts (10 batches per epoch).
    model = zero_data_loss_model(regularizers.L1(RAMP, name="ramp"))
    model.compile(keras.optimizers.SGD(0.0, gradient_accumulation_steps=3), "mse")
    steps = StepLosses()
    x, y = zeros(10)
    history = model.fit(x, y, batch_size=1, epochs=3, verbose=0, shuffle=False,
                        callbacks=[RegularizationScheduler(), steps])
    expected = [RAMP.value_at(batch // 3) * L1_PENALTY for batch in range(30)]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-4, atol=1e-5)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 10
    assert history.history["ramp/l1"] == [RAMP.value_at(b // 3) for b in (9, 19, 29)]


def test_keras_learning_rate_schedule_as_strength():
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, 4, 0.5)
    model = zero_data_loss_model(regularizers.L2(schedule))
    steps = StepLosses()
    x, y = zeros(8)
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler(), steps])
    expected = [0.5 ** (s / 4) * L2_PENALTY for s in range(8)]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-4)


def test_epoch_update_freq_holds_value_within_epoch():
    model = zero_data_loss_model(regularizers.L1(RAMP, name="ramp"))
    steps = StepLosses()
    x, y = zeros(8)
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0, shuffle=False,
                        callbacks=[RegularizationScheduler("epoch"), steps])
    expected = [RAMP.value_at(4 * (s // 4)) * L1_PENALTY for s in range(12)]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-4, atol=1e-5)
    assert history.history["ramp/l1"] == [RAMP.value_at(0), RAMP.value_at(4), RAMP.value_at(8)]


def test_strengths_land_in_history_and_csv_logger(tmp_path):
    reg = regularizers.ElasticNet(l1=RAMP, l2=0.5, name="enet")
    model = zero_data_loss_model(reg)
    path = tmp_path / "log.csv"
    x, y = zeros(8)
    history = model.fit(
        x, y, batch_size=2, epochs=3, verbose=0,
        callbacks=[RegularizationScheduler(), keras.callbacks.CSVLogger(str(path))],
    )
    # The value logged for an epoch is the one its last step used.
    expected = [RAMP.value_at(3), RAMP.value_at(7), RAMP.value_at(11)]
    assert history.history["enet/l1"] == pytest.approx(expected)
    assert "enet/l2" not in history.history  # constants are not logged
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["enet/l1"]) for r in rows] == pytest.approx(expected)
    np.testing.assert_allclose(
        [float(r["loss"]) for r in rows],
        [np.mean([RAMP.value_at(s) * L1_PENALTY for s in range(4 * e, 4 * e + 4)])
         + 0.5 * L2_PENALTY for e in range(3)],
        rtol=1e-5,
    )


def test_progress_bar_shows_strengths(capsys):
    model = zero_data_loss_model(regularizers.L1(RAMP, name="shown"))
    x, y = zeros(4)
    model.fit(x, y, batch_size=2, epochs=1, verbose=1,
              callbacks=[RegularizationScheduler()])
    assert "shown/l1" in capsys.readouterr().out


class UnstoredRegularizerLayer(keras.layers.Layer):
    """A custom layer that passes a regularizer to add_weight only."""

    def build(self, input_shape):
        self.w = self.add_weight(
            shape=(input_shape[-1], 1),
            initializer=keras.initializers.Constant(W),
            regularizer=regularizers.L1(RAMP),
        )

    def call(self, x):
        return x @ self.w


def test_regularizer_not_stored_on_layer():
    model = keras.Sequential([keras.Input((3,)), UnstoredRegularizerLayer()])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x, y = zeros(6)
    steps = StepLosses()
    if BACKEND == "jax":
        # JAX's compiled step cannot see a variable outside the model state.
        with pytest.raises(ValueError, match="not part of the model's state"):
            model.fit(x, y, batch_size=1, verbose=0,
                      callbacks=[RegularizationScheduler(), steps])
        return
    model.fit(x, y, batch_size=1, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler(), steps])
    expected = [RAMP.value_at(s) * L1_PENALTY for s in range(6)]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-4, atol=1e-5)


def test_scheduler_without_scheduled_objects_is_harmless():
    model = zero_data_loss_model(regularizers.L1(0.5))
    x, y = zeros(4)
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0,
                        callbacks=[RegularizationScheduler()])
    assert set(history.history) == {"loss"}
    np.testing.assert_allclose(history.history["loss"], 0.5 * L1_PENALTY, rtol=1e-6)


def test_config_round_trip():
    cb = RegularizationScheduler(update_freq="epoch", log=False)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cb)
    )
    assert restored.get_config() == {"update_freq": "epoch", "log": False}


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(update_freq="step"), ValueError, r"`update_freq`.*'batch', 'epoch'.*'step'"),
        (dict(update_freq=3), ValueError, r"`update_freq`"),
        (dict(log="yes"), TypeError, r"`log`.*bool"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RegularizationScheduler(**kwargs)


def test_top_level_access():
    assert kr.callbacks.RegularizationScheduler is RegularizationScheduler


class SlowBatchEnd(keras.callbacks.Callback):
    """An async-safe callback that takes its time at each batch end (a logger
    writing to disk): the batch-end hooks after it in the list run late."""

    def __init__(self):
        super().__init__()
        self.async_safe = True

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.005)


class LogsByBatch(keras.callbacks.Callback):
    """Records, per (epoch, batch), `logs[key]`, the running mean loss and
    whether the batch-end hook ran on Keras' callback thread."""

    def __init__(self, key, async_safe):
        super().__init__()
        self.key = key
        self.async_safe = async_safe
        self.values, self.means, self.threads = {}, {}, set()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.values[(self.epoch, batch)] = logs[self.key]
        self.means[(self.epoch, batch)] = float(logs["loss"])
        self.threads.add(threading.current_thread() is threading.main_thread())


@pytest.mark.parametrize(
    "per_execution",
    [1, pytest.param(2, marks=pytest.mark.skipif(
        BACKEND == "torch", reason="Keras allows steps_per_execution > 1 only on TF and JAX"))],
)
@pytest.mark.parametrize("dispatch", ["async", "sync"])
def test_batch_logs_hold_the_strength_the_batch_used(dispatch, per_execution):
    # The strength changes at every step. With every callback async-safe,
    # Keras runs the batch-end hooks on its callback thread (JAX, PyTorch),
    # here well after the next step's value was set.
    schedule = schedules.Linear(0.0, 1.0, end_step=40)
    model = zero_data_loss_model(regularizers.L1(schedule, name="ramp"))
    model.compile(keras.optimizers.SGD(0.0), "mse", steps_per_execution=per_execution)
    reader = LogsByBatch("ramp/l1", async_safe=dispatch == "async")
    x, y = zeros(20)
    history = model.fit(x, y, batch_size=1, epochs=2, verbose=0, shuffle=False,
                        callbacks=[SlowBatchEnd(), RegularizationScheduler(), reader])
    # Keras calls the batch end once per execution, with its last batch; the
    # execution's steps all run at the value of its first step.
    ends = [(e, b) for e in range(2) for b in range(per_execution - 1, 20, per_execution)]
    first = {(e, b): 20 * e + b - per_execution + 1 for e, b in ends}
    assert reader.values == {k: schedule.value_at(step) for k, step in first.items()}
    # ... which is the strength the steps used: their loss is the penalty at it.
    losses = [(reader.means[(e, b)] * (b + 1)
               - (reader.means[(e, b - per_execution)] * (b + 1 - per_execution)
                  if b >= per_execution else 0.0)) / per_execution
              for e, b in ends]
    np.testing.assert_allclose(
        losses, [reader.values[k] * L1_PENALTY for k in ends], rtol=1e-4, atol=1e-5)
    assert history.history["ramp/l1"] == [schedule.value_at(first[(e, 19)]) for e in range(2)]
    on_main_thread = {"sync": {True}, "async": {True} if BACKEND == "tensorflow" else {False}}
    assert reader.threads == on_main_thread[dispatch]  # TensorFlow never runs them async


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_evaluate_and_predict_before_fit_do_not_warn(jit_compile):
    # No training step runs, so no RegularizationScheduler is missing.
    model = scheduled_eval_model("unwarned")
    model.compile(keras.optimizers.SGD(0.01), "mse", jit_compile=jit_compile)
    x, y = zeros(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.evaluate(x, y, batch_size=2, verbose=0)
        model.predict(x, batch_size=2, verbose=0)
        model.test_on_batch(x, y)
        model.predict_on_batch(x)
        model(x)
    # A training step still warns, once per object and message.
    with pytest.warns(UserWarning) as record:
        model.train_on_batch(x, y)
    assert sorted(str(w.message).split(" but no")[0]
                  for w in record if w.category is UserWarning) == [
        "`ElasticNet` 'unwarned' has proximal=True",
        "`ElasticNet` 'unwarned' has scheduled 'l1'",
        "`ScheduledDropout` 'drop' has scheduled 'rate'",
    ]


def _two_regularizer_model(first, second):
    model = keras.Sequential([keras.Input((3,)),
                              keras.layers.Dense(2, kernel_regularizer=first),
                              keras.layers.Dense(1, kernel_regularizer=second)])
    model.compile("sgd", "mse")
    return model


def test_equal_regularizers_with_one_name_share_their_log_key():
    # The copies apply_regularization makes: equal configs, one name, one value.
    def make():
        return kr.L2(kr.schedules.Linear(0.0, 1e-3, end_step=4), name="reg")

    model = _two_regularizer_model(make(), make())
    history = model.fit(np.ones((8, 3)), np.ones((8, 1)), batch_size=4, epochs=2, verbose=0,
                        callbacks=[kr.callbacks.RegularizationScheduler()])
    assert history.history["reg/l2"] == pytest.approx([0.25e-3, 0.75e-3])


def test_different_regularizers_with_one_name_are_refused():
    model = _two_regularizer_model(
        kr.L2(kr.schedules.Linear(0.0, 1e-3, end_step=4), name="reg"),
        kr.L2(kr.schedules.Linear(0.0, 1e-2, end_step=4), name="reg"),
    )
    with pytest.raises(ValueError, match=r"same key 'reg/l2' with different configs.*`name=`"):
        model.fit(np.ones((8, 3)), np.ones((8, 1)), verbose=0,
                  callbacks=[kr.callbacks.RegularizationScheduler()])


def test_the_former_name_is_the_driver_and_its_configs_load():
    assert kr.callbacks.RegularizationScheduler is kr.callbacks.RegularizationDriver
    # A config written under the former name (as earlier versions wrote it).
    config = {"module": "keras_regx.callbacks", "class_name": "RegularizationScheduler",
              "config": {"update_freq": "epoch", "log": False},
              "registered_name": "keras_regx>RegularizationScheduler"}
    driver = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(driver) is kr.callbacks.RegularizationDriver
    assert driver.get_config() == {"update_freq": "epoch", "log": False}
    assert keras.saving.serialize_keras_object(driver)["registered_name"] == (
        "keras_regx>RegularizationDriver")


# SparsityMonitor

RAMP_IN = 16  # inputs of the pruning model; kernel entries 0.5, 1.0, ..., 8.0


def pruning_model():
    """A model whose kernel loses exactly one more nonzero entry per step.

    The loss `mean(y_pred)` on inputs of ones has gradient 1 for every kernel
    entry, so SGD(0.5) lowers each by 0.5 per step and the `NonNeg`
    constraint (applied inside the compiled step) clamps the ones that cross
    zero: after `k` steps, `min(k, 16)` of the 16 entries are exactly zero.
    """
    model = keras.Sequential(
        [
            keras.Input((RAMP_IN,)),
            keras.layers.Dense(
                1,
                use_bias=False,
                kernel_initializer=keras.initializers.Constant(
                    0.5 * np.arange(1, RAMP_IN + 1, dtype="float32")[:, None]
                ),
                kernel_constraint=keras.constraints.NonNeg(),
                name="pruned",
            ),
        ]
    )
    model.compile(keras.optimizers.SGD(0.5), lambda y_true, y_pred: keras.ops.mean(y_pred))
    return model


class BatchLogs(keras.callbacks.Callback):
    def __init__(self, key):
        super().__init__()
        self.key = key
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(logs.get(self.key))


def ones(n, features=RAMP_IN):
    return np.ones((n, features), "float32"), np.zeros((n, 1), "float32")


def test_sparsity_every_n_batches_follows_the_weights():
    model = pruning_model()
    seen = BatchLogs("sparsity/pruned")
    x, y = ones(6)
    history = model.fit(x, y, batch_size=1, epochs=2, verbose=0, shuffle=False,
                        callbacks=[SparsityMonitor(update_freq=2), seen])
    expected = [None if step % 2 else min(step, RAMP_IN) / RAMP_IN for step in range(1, 13)]
    assert seen.values == expected
    assert history.history["sparsity"] == [6 / RAMP_IN, 12 / RAMP_IN]
    assert history.history["sparsity/pruned"] == [6 / RAMP_IN, 12 / RAMP_IN]


def test_epoch_sparsity_follows_the_weights(compilations):
    model = pruning_model()
    seen = BatchLogs("sparsity")
    x, y = ones(4)
    monitor = SparsityMonitor()
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0, shuffle=False,
                        callbacks=[monitor, seen])
    assert history.history["sparsity"] == [2 / RAMP_IN, 4 / RAMP_IN, 6 / RAMP_IN]
    assert seen.values == [None] * 6  # nothing at batch ends
    assert compilations.compiled == 1
    # A second fit of the same model reuses the compiled pass.
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False,
                        callbacks=[monitor])
    assert compilations.compiled == 1
    assert history.history["sparsity"] == [8 / RAMP_IN]


def nested_sparse_model():
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="inner_a")], name="inner"
    )
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in (inner.get_layer("inner_a"), model.get_layer("head")):
        kernel, bias = (rng.normal(size=tuple(v.shape)).astype("float32") for v in layer.weights)
        kernel[rng.random(kernel.shape) < 0.4] = 0.0
        kernel[0, 0] = 0.125  # at the threshold below
        kernel[:, 1] = 0.0
        kernel[2, :] = -0.0
        bias[0] = 0.0
        layer.set_weights([kernel, bias])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    return model


def np_kernel_sparsity(model, threshold):
    kernels = {
        name: keras.ops.convert_to_numpy(layer.kernel)
        for name, layer in (("inner_a", model.get_layer("inner").get_layer("inner_a")),
                            ("head", model.get_layer("head")))
    }
    count = {k: int(np.count_nonzero(np.abs(w) <= np.float32(threshold))) for k, w in kernels.items()}
    result = {"sparsity": sum(count.values()) / sum(w.size for w in kernels.values())}
    for k, w in kernels.items():
        result[f"sparsity/{k}"] = count[k] / w.size
        result[f"sparsity/{k}/units"] = (
            np.all(np.abs(w) <= np.float32(threshold), axis=0).sum() / w.shape[1]
        )
        result[f"sparsity/{k}/inputs"] = (
            np.all(np.abs(w) <= np.float32(threshold), axis=1).sum() / w.shape[0]
        )
    return result


@pytest.mark.parametrize("threshold", [0.0, 0.125])
def test_sparsity_in_history_and_csv_logger_equals_numpy(tmp_path, threshold):
    model = nested_sparse_model()
    expected = np_kernel_sparsity(model, threshold)
    path = tmp_path / "log.csv"
    x, y = np.ones((4, 6), "float32"), np.ones((4, 2), "float32")
    history = model.fit(
        x, y, batch_size=2, epochs=2, verbose=0,
        callbacks=[SparsityMonitor(threshold=threshold, structured=True),
                   keras.callbacks.CSVLogger(str(path))],
    )
    for key, value in expected.items():
        assert history.history[key] == [value, value], key
    assert set(history.history) == set(expected) | {"loss"}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["sparsity"]) for r in rows] == pytest.approx([expected["sparsity"]] * 2)
    assert model_sparsity(model, threshold, structured=True) == expected


class PoisonAtEpochEnd(keras.callbacks.Callback):
    """Writes NaN and inf into a kernel after the last step of the epoch."""

    def on_epoch_end(self, epoch, logs=None):
        layer = self.model.get_layer("head")
        kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
        kernel[0, :] = [np.nan, np.inf]
        kernel[1, 1] = -np.inf
        layer.kernel.assign(kernel)


def test_nan_and_inf_weights_count_as_nonzero():
    model = nested_sparse_model()
    x, y = np.ones((2, 6), "float32"), np.ones((2, 2), "float32")
    history = model.fit(x, y, verbose=0, callbacks=[
        PoisonAtEpochEnd(), SparsityMonitor(threshold=0.125, structured=True)])
    kernel = keras.ops.convert_to_numpy(model.get_layer("head").kernel)
    assert np.isnan(kernel[0, 0]) and np.isinf(kernel[1, 1])
    expected = np_kernel_sparsity(model, 0.125)
    assert {k: v[0] for k, v in history.history.items() if k != "loss"} == expected


def test_include_bias_and_per_layer_false():
    model = nested_sparse_model()
    weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    zeros = sum(int(np.count_nonzero(w == 0)) for w in weights)
    x, y = np.ones((2, 6), "float32"), np.ones((2, 2), "float32")
    history = model.fit(x, y, verbose=0,
                        callbacks=[SparsityMonitor(per_layer=False, include_bias=True)])
    assert set(history.history) == {"loss", "sparsity"}
    assert history.history["sparsity"] == [zeros / sum(w.size for w in weights)]


def test_progress_bar_shows_sparsity(capsys):
    model = pruning_model()
    x, y = ones(4)
    model.fit(x, y, batch_size=2, epochs=1, verbose=1,
              callbacks=[SparsityMonitor(update_freq="batch")])
    out = capsys.readouterr().out
    assert "sparsity: 0.1250" in out and "sparsity/pruned" in out


def test_async_safe_only_at_epoch_granularity():
    assert SparsityMonitor().async_safe is True
    assert SparsityMonitor(update_freq=3).async_safe is False


def test_sparsity_monitor_config_round_trip():
    cb = SparsityMonitor(threshold=1e-3, per_layer=True, update_freq=5,
                         include_bias=True, structured=True)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cb)
    )
    assert isinstance(restored, SparsityMonitor)
    assert restored.get_config() == {"threshold": 1e-3, "per_layer": True, "update_freq": 5,
                                     "include_bias": True, "structured": True,
                                     "regularization_loss": True}


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(threshold=-1.0), ValueError, r"`threshold`: expected a float >= 0.0. Received: threshold=-1.0"),
        (dict(threshold="0"), TypeError, r"`threshold`.*Received: threshold='0'"),
        (dict(per_layer="yes"), TypeError, r"`per_layer`: expected a bool"),
        (dict(include_bias=None), TypeError, r"`include_bias`: expected a bool"),
        (dict(structured=1), TypeError, r"`structured`: expected a bool"),
        (dict(update_freq="step"), ValueError, r"`update_freq`.*'epoch', 'batch'.*Received: update_freq='step'"),
        (dict(update_freq=0), ValueError, r"`update_freq`.*positive.*Received: update_freq=0"),
        (dict(update_freq=2.0), TypeError, r"`update_freq`.*Received: update_freq=2.0"),
        (dict(update_freq=True), TypeError, r"`update_freq`"),
        (dict(per_layer=False, structured=True), ValueError, r"`structured`.*per_layer=True"),
        (dict(regularization_loss="yes"), TypeError, r"`regularization_loss`: expected a bool"),
    ],
)
def test_sparsity_monitor_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SparsityMonitor(**kwargs)


def test_sparsity_monitor_top_level_access():
    assert kr.callbacks.SparsityMonitor is SparsityMonitor


class NumpyPenalty(keras.callbacks.Callback):
    """The weight penalties at each epoch end, computed with NumPy."""

    def __init__(self, scheduled):
        super().__init__()
        self.scheduled = scheduled
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        first, second = (self.model.get_layer(n) for n in ("first", "second"))
        k1, b1, k2 = (keras.ops.convert_to_numpy(w).astype("float64")
                      for w in (first.kernel, first.bias, second.kernel))
        # The value of the last step.
        strength = self.scheduled.scheduled_values()[f"{self.scheduled.name}/l1"]
        self.values.append(
            0.01 * np.square(k1).sum()
            + strength * np.abs(b1).sum()
            + 0.05 * np.sqrt(np.square(k2).sum(axis=1)).sum()
        )


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_regularization_loss_equals_the_penalties_at_the_weights(jit_compile):
    scheduled = kr.L1(kr.schedules.Linear(0.0, 0.2, end_step=6))
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(4, name="first", kernel_regularizer=keras.regularizers.L2(0.01),
                           bias_regularizer=scheduled, bias_initializer="ones",
                           activity_regularizer=keras.regularizers.L2(1.0)),
        keras.layers.Dense(2, name="second",
                           kernel_regularizer=kr.GroupLasso(0.05, axis=0)),
    ])
    model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=jit_compile)
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    y = np.ones((8, 2), "float32")
    reference = NumpyPenalty(scheduled)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False, callbacks=[
        kr.callbacks.RegularizationScheduler(), SparsityMonitor(), reference])
    got = history.history["regularization_loss"]
    np.testing.assert_allclose(got, reference.values, rtol=1e-5)
    # The scheduled strength moved between epochs, and the figure with it.
    assert len(set(np.round(got, 6))) == 3


def test_regularization_loss_only_with_regularizers_and_when_asked():
    x, y = np.ones((4, 6), "float32"), np.ones((4, 2), "float32")
    history = nested_sparse_model().fit(x, y, verbose=0, callbacks=[SparsityMonitor()])
    assert "regularization_loss" not in history.history  # no weight has a regularizer
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(2, kernel_regularizer=kr.L2(0.1))])
    model.compile("sgd", "mse")
    history = model.fit(x, y, verbose=0,
                        callbacks=[SparsityMonitor(regularization_loss=False)])
    assert "regularization_loss" not in history.history


def test_terminate_on_nan_still_stops_and_the_monitor_reports_nan_weights():
    model = keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(1, kernel_regularizer=kr.L1(0.01, proximal=True), name="d"),
    ])
    model.compile(keras.optimizers.SGD(1e30), "mse")  # diverges at once
    x = np.full((32, 2), 1e3, "float32")
    history = model.fit(x, np.zeros((32, 1), "float32"), batch_size=8, epochs=5, verbose=0,
                        callbacks=[kr.callbacks.RegularizationScheduler(),
                                   SparsityMonitor(update_freq=1),
                                   keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    kernel = keras.ops.convert_to_numpy(model.get_layer("d").kernel)
    assert not np.isfinite(kernel).all()
    assert history.history["sparsity"][0] == np.count_nonzero(kernel == 0) / kernel.size
