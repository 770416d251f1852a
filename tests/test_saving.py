"""Nothing a user saves is lost.

Models whose regularizers are shared save, load and resume like unshared ones;
interrupted training resumes where it stopped; files written by an earlier
version load with every value.

A regularizer object passed to several layers is what the README's
`reg = ...` quickstart invites. Keras saves its state once, under the first
layer that holds it; these tests check that every sharing pattern loads (with
`safe_mode=True`, with and without `compile`), keeps the sharing, and resumes
training in a fresh process with the logged strengths and losses of the run
that was never interrupted.
"""

import csv

import keras
import numpy as np
import pytest
from conftest import L1_PENALTY
from conftest import RAMP
from conftest import StepLosses
from conftest import run_python
from conftest import zero_data_loss_model
from conftest import zeros

import keras_regx as kr
from keras_regx import _backend
from keras_regx import regularizers
from keras_regx import schedules
from keras_regx.callbacks import RegularizationScheduler
from keras_regx.callbacks import SparsityMonitor

EPOCHS, SPLIT = 4, 2  # the interrupted run saves after SPLIT of EPOCHS epochs


def _shared_regularizers():
    """Scheduled ElasticNet and L2 objects, and a constant one, each to share."""
    return {
        "enet": kr.ElasticNet(
            l1=kr.schedules.Linear(0.0, 1e-2, end_step=6),
            l2=kr.schedules.Cosine(1e-2, 1e-3, end_step=8),
            name="enet",
        ),
        "l2": kr.L2(kr.schedules.Linear(0.0, 1e-3, end_step=100), name="l2"),
        "const": kr.L1(1e-3, name="const"),
    }


def _build(regs):
    """A functional model sharing `regs` across Dense and Conv kernels and
    biases, a layer of another dtype and a nested model."""
    enet, l2, const = regs["enet"], regs["l2"], regs["const"]
    nested = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, kernel_regularizer=enet, name="inner")],
        name="nested",
    )
    inputs = keras.Input((6, 2))
    x = keras.layers.Conv1D(3, 3, kernel_regularizer=enet, bias_regularizer=l2,
                            name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(4, kernel_regularizer=enet, bias_regularizer=enet,
                           activity_regularizer=None, name="dense")(x)
    x = nested(x)
    x = keras.layers.Dense(4, kernel_regularizer=enet, bias_regularizer=const,
                           dtype="mixed_bfloat16", name="mixed")(x)
    outputs = keras.layers.Dense(1, kernel_regularizer=l2, bias_regularizer=const,
                                 name="head")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 6, 2)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")


def _fit(model, x, y, initial_epoch, epochs):
    history = model.fit(x, y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch,
                        shuffle=False, verbose=0,
                        callbacks=[kr.callbacks.RegularizationScheduler()])
    return history.history


def _shared_by(model, names, attribute="kernel_regularizer"):
    layers = {}
    stack = list(model.layers)
    while stack:  # nested models' layers too
        layer = stack.pop()
        layers[layer.name] = layer
        stack.extend(getattr(layer, "layers", []))
    return {id(getattr(layers[name], attribute)) for name in names}


def test_shared_scheduled_regularizers_save_load_and_resume(tmp_path):
    x, y = _data()
    regs = _shared_regularizers()
    keras.utils.set_random_seed(1)
    uninterrupted = _fit(_build(regs), x, y, 0, EPOCHS)

    keras.utils.set_random_seed(1)
    model = _build(_shared_regularizers())
    first = _fit(model, x, y, 0, SPLIT)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)

    for compile in (True, False):  # loads in this process, both ways, sharing kept
        loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True, compile=compile)
        assert len(_shared_by(loaded, ["conv", "dense", "inner", "mixed"])) == 1
        assert _shared_by(loaded, ["conv"], "bias_regularizer") == _shared_by(loaded, ["head"])
        assert len(_shared_by(loaded, ["mixed", "head"], "bias_regularizer")) == 1
        for a, b in zip(loaded.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)

    resumed = _resume_in_fresh_process(tmp_path)
    _assert_resumed(first, resumed, uninterrupted, {"loss", "enet/l1", "enet/l2", "l2/l2"})


def _resume_in_fresh_process(tmp_path, checks=""):
    """Loads `m.keras` in a fresh process, runs `checks` (Python lines on the
    loaded `model`), trains it from epoch SPLIT to EPOCHS on `x.npy`, `y.npy`
    and returns its history."""
    return run_python(
        f"""
        import json, keras, numpy as np
        import keras_regx as kr
        model = keras.models.load_model("m.keras", safe_mode=True)
        {checks}
        x, y = np.load("x.npy"), np.load("y.npy")
        history = model.fit(x, y, batch_size=8, epochs={EPOCHS}, initial_epoch={SPLIT},
                            shuffle=False, verbose=0,
                            callbacks=[kr.callbacks.RegularizationScheduler()])
        print(json.dumps({{k: [float(v) for v in vs] for k, vs in history.history.items()}}))
        """,
        tmp_path,
    )


def _assert_resumed(first, resumed, uninterrupted, keys):
    """The first run's and the resumed run's logs together are the uninterrupted run's."""
    assert set(resumed) == set(uninterrupted) >= keys
    for key, values in uninterrupted.items():
        np.testing.assert_allclose(first[key] + resumed[key], values, rtol=1e-5, err_msg=key)


def _decay_model(ramp):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((4,))]
        + [keras.layers.Dense(4, activation="tanh", kernel_regularizer=kr.L2(ramp, name=f"l2_{i}"),
                              bias_regularizer=kr.L1(ramp, name=f"l1_{i}")) for i in range(3)]
        + [keras.layers.Dense(1)])
    model.compile(kr.optimizers.ScheduledWeightDecay(
        keras.optimizers.Adam(0.01), kr.schedules.Cosine(0.3, 0.0, end_step=24)), "mse")
    return model


def test_shared_schedule_variables_and_weight_decay_resume_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)

    def ramp():
        return kr.schedules.Linear(0.0, 1e-2, end_step=24)

    uninterrupted = _fit(_decay_model(ramp()), x, y, 0, EPOCHS)
    one = ramp()  # every regularizer on one schedule object: one variable
    model = _decay_model(one)
    assert len(model.non_trainable_variables) == 1
    first = _fit(model, x, y, 0, SPLIT)
    model.save(tmp_path / "m.keras")
    resumed = _resume_in_fresh_process(
        tmp_path,
        "assert isinstance(model.optimizer, kr.optimizers.ScheduledWeightDecay); "
        "assert len(model.non_trainable_variables) == 1",
    )
    _assert_resumed(first, resumed, uninterrupted, {"loss", "weight_decay", "l2_0/l2", "l1_2/l1"})


def test_one_regularizer_shared_by_two_models(tmp_path):
    reg = kr.L2(kr.schedules.Linear(0.0, 1e-3, end_step=100))
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    for i in range(2):
        model = keras.Sequential([keras.Input((3,)),
                                  keras.layers.Dense(2, kernel_regularizer=reg),
                                  keras.layers.Dense(1, kernel_regularizer=reg)])
        model.compile("sgd", "mse")
        _fit(model, x, y, 0, 1 + i)
        model.save(tmp_path / f"{i}.keras")
        loaded = keras.models.load_model(tmp_path / f"{i}.keras")
        a, b = (layer.kernel_regularizer for layer in loaded.layers)
        assert a is b
        np.testing.assert_allclose(
            float(keras.ops.convert_to_numpy(a.l2)), float(keras.ops.convert_to_numpy(reg.l2))
        )


@pytest.mark.parametrize("reuse", [False, True])
def test_clone_and_from_config_build_new_objects(reuse):
    # Outside a file load, every deserialization builds its own object.
    reg = kr.L1(kr.schedules.Linear(0.0, 1e-3, end_step=10), name="same")
    model = keras.Sequential([keras.Input((3,)),
                              keras.layers.Dense(2, kernel_regularizer=reg),
                              keras.layers.Dense(1, kernel_regularizer=reg)])
    clone = keras.models.clone_model(model) if reuse else keras.Sequential.from_config(
        model.get_config()
    )
    a, b = (layer.kernel_regularizer for layer in clone.layers)
    assert a is not b and a is not reg
    assert a.get_config() == b.get_config() == reg.get_config()


@pytest.mark.parametrize("saved_by", ["tensorflow", "jax", "torch"])
def test_files_saved_by_an_earlier_version_load_with_every_value(saved_by):
    """Files written by keras_regx 0.1.0.dev0 (`tests/data/make_saved_models.py`,
    every object that saves state, trained a few steps) load on every backend
    with every variable's value, the optimizer's included."""
    import os
    import sys

    here = os.path.join(os.path.dirname(__file__), "data")
    sys.path.insert(0, here)
    try:
        from make_saved_models import state
    finally:
        sys.path.remove(here)
    model = keras.models.load_model(os.path.join(here, f"saved_{saved_by}.keras"), safe_mode=True)
    saved = np.load(os.path.join(here, f"saved_{saved_by}.npz"))
    variables = state(model)
    # Paths (and the optimizer's slot names, made from them) may differ with
    # the scope a load builds in; the model's variable names and the order do not.
    keys = sorted(saved.files)
    assert len(keys) == len(variables)
    names = [key.split(" ", 1)[1].rsplit("/", 1)[-1] for key in keys[:len(model.variables)]]
    assert names == [v.name for v in model.variables]
    for key, variable in zip(keys, variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), saved[key], err_msg=key)


# Interrupted training resumes where it stopped: a model saved mid-run and
# loaded in a fresh process, BackupAndRestore after a fault (at an epoch end
# or mid-epoch), and a crash between the driver's write and the step.



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
    # Nothing of the crashed run is left on the model: `close_all`, which
    # takes off the writers a fit that never ended left on it, finds none.
    train_function = model.train_function
    assert train_function is not None
    _backend.JaxStateWriter.close_all(model)
    assert model.train_function is train_function
    assert "jax_state_sync" not in vars(model)
