import csv

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
