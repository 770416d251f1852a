"""Models whose regularizers are shared save, load and resume like unshared ones.

A regularizer object passed to several layers is what the README's
`reg = ...` quickstart invites. Keras saves its state once, under the first
layer that holds it; these tests check that every sharing pattern loads (with
`safe_mode=True`, with and without `compile`), keeps the sharing, and resumes
training in a fresh process with the logged strengths and losses of the run
that was never interrupted.
"""

import keras
import numpy as np
import pytest
from conftest import run_python

import keras_regx as kr

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
    layers = {layer.name: layer for layer in model._flatten_layers(recursive=True)}
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

    resumed = run_python(
        f"""
        import json, keras, numpy as np
        import keras_regx as kr
        model = keras.models.load_model("m.keras", safe_mode=True)
        x, y = np.load("x.npy"), np.load("y.npy")
        history = model.fit(x, y, batch_size=8, epochs={EPOCHS}, initial_epoch={SPLIT},
                            shuffle=False, verbose=0,
                            callbacks=[kr.callbacks.RegularizationScheduler()])
        print(json.dumps({{k: [float(v) for v in vs] for k, vs in history.history.items()}}))
        """,
        tmp_path,
    )
    assert set(resumed) == set(uninterrupted) >= {"loss", "enet/l1", "enet/l2", "l2/l2"}
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
    resumed = run_python(
        f"""
        import json, keras, numpy as np
        import keras_regx as kr
        model = keras.models.load_model("m.keras", safe_mode=True)
        assert isinstance(model.optimizer, kr.optimizers.ScheduledWeightDecay)
        assert len(model.non_trainable_variables) == 1
        x, y = np.load("x.npy"), np.load("y.npy")
        history = model.fit(x, y, batch_size=8, epochs={EPOCHS}, initial_epoch={SPLIT},
                            shuffle=False, verbose=0,
                            callbacks=[kr.callbacks.RegularizationScheduler()])
        print(json.dumps({{k: [float(v) for v in vs] for k, vs in history.history.items()}}))
        """,
        tmp_path,
    )
    assert set(resumed) == set(uninterrupted) >= {"loss", "weight_decay", "l2_0/l2", "l1_2/l1"}
    for key, values in uninterrupted.items():
        np.testing.assert_allclose(first[key] + resumed[key], values, rtol=1e-5, err_msg=key)


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
