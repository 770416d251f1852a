import csv
import textwrap
import threading
import time
import warnings

import keras
import numpy as np
import pytest
from conftest import BACKEND
from conftest import StepLosses
from conftest import jit_compile_options
from conftest import run_python

import keras_regx as kr
from keras_regx import regularizers
from keras_regx import schedules
from keras_regx.callbacks import RegularizationScheduler

W = np.array([[1.0], [-2.0], [3.0]], "float32")
L1_PENALTY = float(np.abs(W).sum())  # 6
L2_PENALTY = float(np.square(W).sum())  # 14


def zero_data_loss_model(reg, jit_compile="auto"):
    """A model whose data loss is 0 and whose weights never move (lr = 0).

    Its loss is therefore exactly the penalty at the current strength.
    """
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(
                1,
                use_bias=False,
                kernel_initializer=keras.initializers.Constant(W),
                kernel_regularizer=reg,
            ),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    return model


def zeros(n):
    return np.zeros((n, 3), "float32"), np.zeros((n, 1), "float32")


RAMP = schedules.Linear(0.0, 1.0, begin_step=2, end_step=12)
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


def test_resume_in_fresh_process_continues_schedule(tmp_path):
    model = zero_data_loss_model(regularizers.L1(RAMP, name="ramp"))
    x, y = zeros(5)
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler()])
    model.save(tmp_path / "mid.keras")
    got = run_python(
        """
        import json, keras, numpy as np
        import keras_regx as kr
        model = keras.models.load_model("mid.keras", safe_mode=True)
        losses = []
        class Steps(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                losses.append(float(logs["loss"]) * (batch + 1)
                              - (losses_mean[0] * batch))
                losses_mean[0] = float(logs["loss"])
        losses_mean = [0.0]
        iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        x = np.zeros((6, 3), "float32"); y = np.zeros((6, 1), "float32")
        model.fit(x, y, batch_size=1, epochs=1, verbose=0, shuffle=False,
                  callbacks=[kr.callbacks.RegularizationScheduler(), Steps()])
        print(json.dumps({"iterations": iterations, "losses": losses}))
        """,
        tmp_path,
    )
    assert got["iterations"] == 5
    expected = [RAMP.value_at(s) * L1_PENALTY for s in range(5, 11)]
    np.testing.assert_allclose(got["losses"], expected, rtol=1e-4)


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def test_backup_and_restore_continues_schedule(tmp_path):
    x, y = zeros(6)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = zero_data_loss_model(regularizers.L1(RAMP, name="ramp"))
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, batch_size=2, epochs=5, verbose=0, shuffle=False,
                  callbacks=[RegularizationScheduler(), backup, Interrupt(2)])
    # A new process would build a new model; the backup restores its state.
    model = zero_data_loss_model(regularizers.L1(RAMP, name="ramp"))
    steps = StepLosses()
    history = model.fit(x, y, batch_size=2, epochs=5, verbose=0, shuffle=False,
                        callbacks=[RegularizationScheduler(), backup, steps])
    assert len(history.epoch) == 3  # epochs 2, 3, 4
    expected = [RAMP.value_at(s) * L1_PENALTY for s in range(6, 15)]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-4)


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


# SparsityMonitor

from keras_regx.callbacks import SparsityMonitor  # noqa: E402
from keras_regx.sparsity import model_sparsity  # noqa: E402

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


def test_epoch_sparsity_follows_the_weights():
    model = pruning_model()
    seen = BatchLogs("sparsity")
    x, y = ones(4)
    monitor = SparsityMonitor()
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0, shuffle=False,
                        callbacks=[monitor, seen])
    assert history.history["sparsity"] == [2 / RAMP_IN, 4 / RAMP_IN, 6 / RAMP_IN]
    assert seen.values == [None] * 6  # nothing at batch ends
    # A second fit of the same model reuses the compiled pass.
    counter = monitor._counter
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False,
                        callbacks=[monitor])
    assert monitor._counter is counter
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
        strength = self.scheduled._current["l1"]  # the value of the last step
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


# Training under Keras' own distribution engines (TensorFlow: MirroredStrategy
# over two logical CPUs; JAX: keras.distribution over two host devices), in a
# fresh process because both need their devices set before the backend starts.
# The script trains a model with scheduled, proximal and group penalties (with
# RegularizationScheduler and SparsityMonitor) and a model with every dropout
# variant at scheduled rates, once on one device and once distributed.
DISTRIBUTED_SCRIPT = """
import json
import numpy as np, keras, keras_regx as kr


class BatchLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(logs["loss"]))


def regularized_model():
    keras.utils.set_random_seed(0)
    ramp = kr.schedules.Linear(0.0, 1e-2, end_step=8)
    model = keras.Sequential([keras.Input((6,)),
        keras.layers.Dense(8, activation="relu", name="d1",
                           kernel_regularizer=kr.ElasticNet(0.05, ramp, proximal=True, name="enet")),
        keras.layers.Dense(4, activation="relu", name="d2",
                           kernel_regularizer=kr.GroupLasso(0.05, axis=0, proximal=True, name="group")),
        keras.layers.Dense(1, name="d3", kernel_regularizer=kr.L2(ramp, name="l2"),
                           bias_regularizer=keras.regularizers.L1(1e-3))])
    # Decoupled weight decay on a schedule, under the proximal steps.
    model.compile(kr.optimizers.ScheduledWeightDecay(keras.optimizers.SGD(0.05, momentum=0.5),
                                                     kr.schedules.Linear(0.0, 0.2, end_step=8)),
                  "mse")
    return model


def dropout_model():
    keras.utils.set_random_seed(0)
    rate = kr.schedules.Linear(0.1, 0.4, end_step=8)
    inputs = keras.Input((8, 4))
    h = kr.layers.DropBlock1D(rate, block_size=3, seed=1, name="block")(inputs)
    h = keras.layers.Flatten()(h)
    h = kr.layers.DropConnectDense(16, rate=rate, activation="relu", seed=2, name="connect")(h)
    h = kr.layers.ScheduledDropout(rate, seed=3, name="drop")(h)
    branch = keras.layers.Dense(16, name="branch")(h)
    h = keras.layers.Add()([h, kr.layers.DropPath(rate, seed=4, name="path")(branch)])
    outputs = kr.layers.ConcreteDropout(keras.layers.Dense(1), seed=5, mc_inference=False,
                                        name="concrete")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


def train(make_scope):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    xd = rng.normal(size=(64, 8, 4)).astype("float32")
    result = {}
    for label, factory in (("single", None), ("distributed", make_scope)):
        scope = factory() if factory else None
        if scope is not None:
            scope.__enter__()
        model, dmodel, losses = regularized_model(), dropout_model(), BatchLosses()
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[
            kr.callbacks.RegularizationScheduler(),
            kr.callbacks.SparsityMonitor(structured=True), losses])
        dhistory = dmodel.fit(xd, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                              callbacks=[kr.callbacks.RegularizationScheduler()])
        predicted = dmodel.predict(xd, verbose=0)
        shardings = sorted({str(getattr(w.value, "sharding", ""))
                            for w in model.weights + dmodel.weights})
        if scope is not None:
            scope.__exit__(None, None, None)
        # At inference the dropout layers are the identity: a copy of the
        # weights in a model built without distribution predicts the same.
        plain = dropout_model()
        plain.set_weights(dmodel.get_weights())
        result[label] = {
            "history": history.history,
            "batch_losses": losses.values,
            "weights": [w.tolist() for w in model.get_weights()],
            "exact_zeros": int(sum((w == 0).sum() for w in model.get_weights())),
            "rates": {k: v for k, v in dhistory.history.items() if k.endswith("/rate")},
            "dropout_losses": dhistory.history["loss"],
            "predict_gap": float(np.abs(predicted - plain.predict(xd, verbose=0)).max()),
            "shardings": shardings,
        }
    print(json.dumps(result))
"""


def _assert_distributed_matches_one_device(result, same_masks):
    one, many = result["single"], result["distributed"]
    assert sorted(one["history"]) == sorted(many["history"])
    assert "regularization_loss" in one["history"] and "sparsity/d2/inputs" in one["history"]
    assert one["history"]["weight_decay"] == pytest.approx([0.075, 0.175])  # steps 3 and 7
    for key, values in one["history"].items():
        np.testing.assert_allclose(many["history"][key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(many["batch_losses"], one["batch_losses"], rtol=1e-5)
    for a, b in zip(one["weights"], many["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert many["exact_zeros"] == one["exact_zeros"] > 0  # the proximal steps ran
    assert many["rates"] == one["rates"] and len(one["rates"]) == 4
    assert np.isfinite(many["dropout_losses"]).all()
    if same_masks:  # JAX draws the same numbers for a sharded array
        np.testing.assert_allclose(many["dropout_losses"], one["dropout_losses"], rtol=1e-5)
    assert many["predict_gap"] <= 1e-5


if BACKEND == "tensorflow":

    def test_mirrored_strategy_matches_one_device(tmp_path):
        result = run_python(
            textwrap.dedent("""
            import tensorflow as tf
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            """)
            + DISTRIBUTED_SCRIPT
            + textwrap.dedent("""
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            assert strategy.num_replicas_in_sync == 2
            train(strategy.scope)
            """),
            tmp_path,
        )
        # Each replica draws its own dropout masks: not those of one device.
        _assert_distributed_matches_one_device(result, same_masks=False)


if BACKEND == "jax":

    @pytest.mark.parametrize("kind", ["data_parallel", "model_parallel"])
    def test_keras_distribution_matches_one_device(tmp_path, kind):
        result = run_python(
            textwrap.dedent("""
            import os
            os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
            import jax
            """)
            + DISTRIBUTED_SCRIPT
            + textwrap.dedent(f"""
            devices = jax.devices()
            assert len(devices) == 2
            if "{kind}" == "data_parallel":
                distribution = keras.distribution.DataParallel(devices=devices)
            else:  # kernels split over the two devices
                mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices=devices)
                layout = keras.distribution.LayoutMap(mesh)
                layout[".*d[12]/kernel"] = (None, "model")
                layout[".*connect/kernel"] = (None, "model")
                distribution = keras.distribution.ModelParallel(
                    layout_map=layout, batch_dim_name="batch")
            train(distribution.scope)
            """),
            tmp_path,
        )
        _assert_distributed_matches_one_device(result, same_masks=True)
        expected = "'batch': 2" if kind == "data_parallel" else "P(None, 'model')"
        assert any(expected in s for s in result["distributed"]["shardings"])


class Crash(keras.callbacks.Callback):
    """Raises after the `at`-th training batch of this callback's life."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("injected fault")


def _fault_model():
    keras.utils.set_random_seed(0)
    ramp = kr.schedules.Linear(0.0, 0.05, end_step=20)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu", name="d1",
                           kernel_regularizer=kr.L1(ramp, proximal=True, name="l1")),
        kr.layers.ScheduledDropout(kr.schedules.Linear(0.0, 0.3, end_step=20), seed=1,
                                   name="drop"),
        keras.layers.Dense(1, name="d2"),
    ])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.5), "mse")
    return model


def _fit_with_backup(model, tmp_path, name, save_freq, extra=()):
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    y = np.random.default_rng(1).normal(size=(64, 1)).astype("float32")
    logger = keras.callbacks.CSVLogger(str(tmp_path / f"{name}.csv"), append=True)
    callbacks = [
        kr.callbacks.RegularizationScheduler(),
        SparsityMonitor(),
        keras.callbacks.BackupAndRestore(str(tmp_path / f"{name}_backup"), save_freq=save_freq),
        logger,
        *extra,
    ]
    try:
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
    finally:
        # CSVLogger closes its file at train end, which a fault skips.
        csv_file = getattr(logger, "csv_file", None)
        if csv_file is not None and not csv_file.closed:
            csv_file.close()
    with open(tmp_path / f"{name}.csv") as f:
        return list(csv.DictReader(f))


def test_interrupted_fit_resumes_schedules_proximal_steps_and_logs(tmp_path):
    # 8 batches per epoch; the fault hits the 5th batch of the second epoch.
    reference = _fault_model()
    expected = _fit_with_backup(reference, tmp_path, "reference", "epoch")
    with pytest.raises(RuntimeError, match="injected fault"):
        _fit_with_backup(_fault_model(), tmp_path, "run", "epoch", [Crash(13)])
    model = _fault_model()  # a new process would start here
    rows = _fit_with_backup(model, tmp_path, "run", "epoch")
    # BackupAndRestore restored the weights, the optimizer (its iteration
    # count drives the schedules) and the seed generators (same masks):
    # the run ends where the uninterrupted one does, exact zeros included.
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert (keras.ops.convert_to_numpy(model.get_layer("d1").kernel) == 0.0).any()
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]  # none missing or repeated
    for row, want in zip(rows, expected):
        for key in ("l1/l1", "drop/rate", "sparsity", "regularization_loss"):
            assert float(row[key]) == pytest.approx(float(want[key]), rel=1e-5), key


def test_mid_epoch_backup_continues_the_schedules_from_the_restored_step(tmp_path):
    # Keras restores a mid-epoch backup's weights and optimizer but replays the
    # interrupted epoch from its first batch; the schedules follow the
    # optimizer's update count, so they continue from the restored step.
    with pytest.raises(RuntimeError, match="injected fault"):
        _fit_with_backup(_fault_model(), tmp_path, "run", 3, [Crash(13)])
    model = _fault_model()
    rows = _fit_with_backup(model, tmp_path, "run", 3)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    restored = 12  # the last backup before the fault: after 12 updates
    steps = [7, restored + 7, restored + 15]  # the last step of each epoch
    schedule = kr.schedules.Linear(0.0, 0.05, end_step=20)
    assert [float(r["l1/l1"]) for r in rows] == pytest.approx(
        [schedule.value_at(s) for s in steps])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == restored + 16


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


class CrashAtBatchBegin(keras.callbacks.Callback):
    """Raises at the start of the `at`-th batch of its life.

    Placed after the scheduler, it raises once the scheduler has set the
    values of that batch's step and before the step runs (where a
    KeyboardInterrupt lands most of the time).
    """

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at:
            raise RuntimeError("crash at batch begin")


CRASH_SCHEDULES = {
    "ramp": schedules.Linear(0.5, 1.5, end_step=10),
    # Steps 3 and 4 share a value that step 2 (the one a backup after step 2
    # holds) does not.
    "steps": schedules.PiecewiseConstant([2, 6], [0.5, 1.0, 1.5]),
}


@pytest.mark.parametrize("schedule", sorted(CRASH_SCHEDULES))
@pytest.mark.parametrize("backup", [False, True], ids=["continue", "backup"])
@pytest.mark.parametrize("next_scheduler", ["same", "new", "none"])
def test_a_crash_mid_epoch_leaves_no_stale_strength(tmp_path, schedule, backup, next_scheduler):
    # 3 batches of 2 per epoch; the crash comes at the start of the 5th batch,
    # after the scheduler set the value of step 4 and before step 4 ran.
    schedule = CRASH_SCHEDULES[schedule]
    scheduler = RegularizationScheduler()
    model = zero_data_loss_model(regularizers.L1(schedule))
    x, y = zeros(6)
    extra = [keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))] if backup else []
    with pytest.raises(RuntimeError, match="crash at batch begin"):
        model.fit(x, y, batch_size=2, epochs=3, verbose=0, shuffle=False,
                  callbacks=[scheduler, *extra, CrashAtBatchBegin(5)])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4
    # The same model trains on (as after a KeyboardInterrupt in a notebook).
    steps = StepLosses()
    driver = {"same": [scheduler], "new": [RegularizationScheduler()], "none": []}
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0, shuffle=False,
                        callbacks=[*driver[next_scheduler], *extra, steps])
    # The backup (epoch 0's end) restores the weights and the optimizer after
    # step 2: the run goes on from step 3 for epochs 1 and 2; without one, from
    # step 4 for 3 epochs.
    first = 3 if backup else 4
    assert len(history.epoch) == (2 if backup else 3)
    if next_scheduler == "none":
        # Undriven, the strength stays where it was left: the value saved with
        # the weights (step 2's), or the one set last (step 4's; on JAX step 4
        # never ran, and the state sync that ended the crashed fit wrote it).
        held = schedule.value_at(2 if backup else 4)
        expected = [held * L1_PENALTY] * len(steps.losses)
    else:
        expected = [schedule.value_at(s) * L1_PENALTY
                    for s in range(first, first + len(steps.losses))]
    np.testing.assert_allclose(steps.losses, expected, rtol=1e-5)
    # Nothing of the crashed run is left on the model.
    assert model.train_function is not None
    assert getattr(model.train_function, "_keras_regx_writer", None) is None
    assert "jax_state_sync" not in vars(model)


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


def scheduled_eval_model(name):
    reg = regularizers.ElasticNet(l1=RAMP, l2=0.5, proximal=True, name=name)
    model = keras.Sequential([
        keras.Input((3,)),
        kr.layers.ScheduledDropout(schedules.Linear(0.0, 0.5, end_step=4), seed=1, name="drop"),
        keras.layers.Dense(1, kernel_regularizer=reg),
    ])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


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


def test_a_custom_training_loop_computing_gradients_warns():
    model = scheduled_eval_model("custom")
    x, _ = zeros(2)
    model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        if BACKEND == "torch":
            import torch

            with torch.no_grad():  # PyTorch records gradients unless told not to
                model.losses
        else:
            model.losses  # a look at the penalties, no gradients
    with pytest.warns(UserWarning) as record:
        if BACKEND == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = keras.ops.sum(model.losses)
            tape.gradient(loss, model.trainable_weights)
        elif BACKEND == "jax":
            import jax

            def loss_fn(trainable):
                _, _, losses = model.stateless_call(
                    trainable, [v.value for v in model.non_trainable_variables], x,
                    return_losses=True)
                return sum(losses)

            jax.grad(loss_fn)([v.value for v in model.trainable_variables])
        else:
            keras.ops.sum(model.losses).backward()
    assert sorted(str(w.message).split(" but no")[0]
                  for w in record if w.category is UserWarning) == [
        "`ElasticNet` 'custom' has proximal=True",
        "`ElasticNet` 'custom' has scheduled 'l1'",
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


def _guide_loop(model, callbacks, scheduler, epochs, steps, feed=True):
    """The training loop of Keras' guide "writing a training loop from
    scratch" for this backend, on a model never compiled: the loss is the
    model's weight penalties alone (SGD(0): the weights stay). Returns the
    losses of the steps."""
    optimizer = keras.optimizers.SGD(0.0)
    optimizer.build(model.trainable_variables)
    x = np.ones((1, 2), "float32")
    if BACKEND == "jax":
        import jax

        def loss_fn(trainable, non_trainable, x):
            _, non_trainable, losses = model.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True)
            return sum(losses), non_trainable

        @jax.jit
        def step_fn(state, x):
            trainable, non_trainable, optimizer_values = state
            (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                trainable, non_trainable, x)
            trainable, optimizer_values = optimizer.stateless_apply(
                optimizer_values, grads, trainable)
            return loss, (trainable, non_trainable, optimizer_values)

        state = ([v.value for v in model.trainable_variables],
                 [v.value for v in model.non_trainable_variables],
                 [v.value for v in optimizer.variables])
    losses = []
    callbacks.on_train_begin()
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        for step in range(steps):
            callbacks.on_train_batch_begin(step)
            if BACKEND == "jax":
                if feed:
                    state = (state[0], scheduler.state_values(state[1]), state[2])
                loss, state = step_fn(state, x)
            elif BACKEND == "tensorflow":
                import tensorflow as tf

                with tf.GradientTape() as tape:
                    model(x, training=True)
                    loss = keras.ops.sum(model.losses)
                optimizer.apply(tape.gradient(loss, model.trainable_weights),
                                model.trainable_weights)
            else:
                model.zero_grad()
                model(x, training=True)
                loss = keras.ops.sum(model.losses)
                loss.backward()
                optimizer.apply([v.value.grad for v in model.trainable_weights],
                                model.trainable_weights)
            losses.append(float(keras.ops.convert_to_numpy(loss)))
            logs = {"loss": losses[-1]}
            callbacks.on_train_batch_end(step, logs)
        callbacks.on_epoch_end(epoch, {})
    callbacks.on_train_end()
    return losses


def test_guide_training_loops_follow_the_schedule():
    # Keras' custom-loop guides drive callbacks through CallbackList on a
    # model never compiled: the step is counted across epochs, and on JAX
    # `state_values` carries the values into the state the loop threads.
    reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4), name="l2")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        1, kernel_regularizer=reg, kernel_initializer="ones", use_bias=False)])
    logged = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            logged.append(logs["l2/l2"])

    scheduler = RegularizationScheduler()
    callbacks = keras.callbacks.CallbackList([scheduler, Spy()], model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the schedule is driven: no warning
        losses = _guide_loop(model, callbacks, scheduler, epochs=2, steps=3)
    strengths = [min(step / 4, 1.0) for step in range(6)]
    assert logged == pytest.approx(strengths)
    assert losses == pytest.approx([2.0 * s for s in strengths])  # l2 * sum(ones(2) ** 2)


def test_a_jax_loop_without_state_values_warns_once_naming_the_object():
    # Only JAX's stateless loop reads the state it is given; on TensorFlow
    # and PyTorch the same loop reads the variables and needs nothing.
    reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4), name="ramped")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        1, kernel_regularizer=reg, kernel_initializer="ones", use_bias=False)])
    scheduler = RegularizationScheduler()
    callbacks = keras.callbacks.CallbackList([scheduler], model=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = _guide_loop(model, callbacks, scheduler, epochs=1, steps=3, feed=False)
    messages = [str(w.message) for w in caught if "state_values" in str(w.message)]
    if BACKEND == "jax":
        assert len(messages) == 1 and "'ramped'" in messages[0]
        assert losses == pytest.approx([0.0, 0.0, 0.0])  # the state's value: schedule(0)
    else:
        assert messages == []
        assert losses == pytest.approx([0.0, 0.5, 1.0])


def test_state_values_before_on_train_begin_returns_the_values_as_given():
    reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_regularizer=reg)])
    scheduler = RegularizationScheduler()
    scheduler.set_model(model)
    values = [np.float32(7.0)]
    assert scheduler.state_values(values) == values


def test_state_values_checks_its_argument():
    reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_regularizer=reg)])
    scheduler = RegularizationScheduler()
    keras.callbacks.CallbackList([scheduler], model=model).on_train_begin()
    with pytest.raises(ValueError, match=r"`non_trainable_values`.*one value per variable.*\(1\).*0 values"):
        scheduler.state_values([])


def test_proximal_without_an_optimizer_is_a_clear_error():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        1, kernel_regularizer=kr.L1(0.1, proximal=True))])
    callbacks = keras.callbacks.CallbackList([RegularizationScheduler()], model=model)
    with pytest.raises(ValueError, match=r"L1\(proximal=True\)` on weight .*kernel.*needs the "
                                         r"optimizer.*model.compile\(optimizer="):
        callbacks.on_train_begin()
