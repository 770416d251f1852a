"""The scheduler's work does not grow with the number of scheduled objects.

Objects built on one schedule object share one variable (one state entry for
the compiled step), and so do those of one model whose schedules are equal
once the model trains; each distinct schedule is evaluated once per step, and
models whose objects share variables train, log, save and load exactly like
models whose objects each hold their own.
"""

import keras
import numpy as np
import pytest

import keras_regx as kr
from conftest import jit_compile_options

LAYERS, UNITS, BATCH, STEPS = 5, 4, 4, 3


def _mlp(make_reg, layers=LAYERS):
    """A small MLP; every kernel and bias gets its own `make_reg(i)`."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((UNITS,))]
        + [
            keras.layers.Dense(UNITS, activation="tanh",
                               kernel_regularizer=make_reg(2 * i),
                               bias_regularizer=make_reg(2 * i + 1))
            for i in range(layers)
        ]
        + [keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, UNITS)).astype("float32")
    y = rng.normal(size=(BATCH * STEPS, 1)).astype("float32")
    return x, y


def _ramp():
    return kr.schedules.Linear(0.0, 0.05, end_step=2 * STEPS)


def _fit(model, epochs=2):
    x, y = _data()
    return model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=[kr.callbacks.RegularizationScheduler()])


def test_objects_built_on_one_schedule_share_one_variable():
    ramp = _ramp()
    shared = _mlp(lambda i: kr.ElasticNet(ramp, ramp, name=f"reg{i}"))
    # Two per object would be 20; l1 and l2 of one object keep one each.
    assert len(shared.non_trainable_variables) == 2
    separate = _mlp(lambda i: kr.ElasticNet(_ramp(), _ramp(), name=f"reg{i}"))
    assert len(separate.non_trainable_variables) == 2 * 2 * LAYERS
    # A dropout rate on the same schedule object shares it too.
    rate = kr.schedules.Linear(0.0, 0.5, end_step=10)
    drops = [kr.layers.ScheduledDropout(rate) for _ in range(3)]
    assert len({id(d.non_trainable_variables[0]) for d in drops}) == 1


def test_each_distinct_schedule_is_evaluated_once_per_step(monkeypatch):
    # Ten objects on equal but separate Linear schedules, ten on one Cosine:
    # two distinct schedules, whatever the number of objects.
    model = _mlp(
        lambda i: kr.L2(_ramp() if i % 2 else kr.schedules.Cosine(0.05, 0.0, end_step=6),
                        name=f"reg{i}")
    )
    calls = []
    for cls in (kr.schedules.Linear, kr.schedules.Cosine):
        original = cls.value_at
        monkeypatch.setattr(cls, "value_at",
                            lambda self, step, _f=original: calls.append(step) or _f(self, step))
    _fit(model, epochs=1)
    # Each schedule at the epoch start (step 0), then at steps 1 and 2.
    assert sorted(calls) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_shared_and_separate_variables_train_alike(jit_compile):
    ramp = _ramp()
    models = {
        "one schedule object": _mlp(lambda i: kr.ElasticNet(ramp, ramp, name=f"reg{i}")),
        "equal schedules": _mlp(lambda i: kr.ElasticNet(_ramp(), _ramp(), name=f"reg{i}")),
    }
    one = kr.ElasticNet(_ramp(), _ramp(), name="reg")
    models["one regularizer object"] = _mlp(lambda i: one)
    histories = {}
    for name, model in models.items():
        model.compile(keras.optimizers.SGD(0.05), "mse", jit_compile=jit_compile)
        histories[name] = _fit(model).history
    steps = np.arange(2 * STEPS)
    expected = np.minimum(steps / (2 * STEPS), 1.0) * 0.05  # the ramp, by step
    # Epoch logs hold the last step's value; per-object keys all follow it.
    for key in ("reg0/l1", "reg9/l2"):
        for name in ("one schedule object", "equal schedules"):
            np.testing.assert_allclose(histories[name][key], expected[STEPS - 1::STEPS], rtol=1e-6)
    for name in ("one schedule object", "one regularizer object"):
        np.testing.assert_allclose(histories[name]["loss"], histories["equal schedules"]["loss"],
                                   rtol=1e-6)
        for got, want in zip(models[name].trainable_weights, models["equal schedules"].trainable_weights):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                                       keras.ops.convert_to_numpy(want), rtol=1e-6, atol=1e-7)


def test_shared_variables_save_load_and_resume(tmp_path):
    x, y = _data()
    ramp = _ramp()
    models = {
        "one schedule object": _mlp(lambda i: kr.ElasticNet(ramp, ramp, name=f"reg{i}")),
        # What every version so far wrote: one variable per object and argument.
        "equal schedules": _mlp(lambda i: kr.ElasticNet(_ramp(), _ramp(), name=f"reg{i}")),
    }
    for name, model in models.items():
        _fit(model, epochs=1)
        path = str(tmp_path / "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        # Equal schedule configs load as one schedule object: one variable
        # for l1 and one for l2, holding the saved values.
        assert len(loaded.non_trainable_variables) == 2
        want = kr.schedules.value_at(ramp, STEPS - 1)  # the last step's value
        for variable in loaded.non_trainable_variables + model.non_trainable_variables:
            assert float(keras.ops.convert_to_numpy(variable)) == pytest.approx(want, rel=1e-6)
        # Both go on from the same step with the same schedules.
        history = _fit(model, epochs=1).history
        resumed = _fit(loaded, epochs=1).history
        np.testing.assert_allclose(resumed["loss"], history["loss"], rtol=1e-6)
        np.testing.assert_allclose(resumed["reg3/l1"], history["reg3/l1"], rtol=1e-6)
        for got, want in zip(loaded.trainable_weights, model.trainable_weights):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                                       keras.ops.convert_to_numpy(want), rtol=1e-6, atol=1e-7)


def _values(variables):
    return [float(keras.ops.convert_to_numpy(v)) for v in variables]


def test_fit_joins_the_equal_schedules_of_one_model():
    x, y = _data()
    ramp = _ramp()
    reference = _mlp(lambda i: kr.ElasticNet(kr.schedules.Linear(0.0, 0.01 * (i + 1), end_step=7),
                                             ramp, name=f"reg{i}"))
    # l1: a different ramp per object; l2: equal ramps, built per object.
    model = _mlp(lambda i: kr.ElasticNet(kr.schedules.Linear(0.0, 0.01 * (i + 1), end_step=7),
                                         _ramp(), name=f"reg{i}"))
    other = _mlp(lambda i: kr.ElasticNet(kr.schedules.Linear(0.0, 0.01 * (i + 1), end_step=7),
                                         _ramp(), name=f"reg{i}"))
    assert len(model.non_trainable_variables) == 4 * LAYERS
    # Traced before the fit, with the variables the objects held then.
    before = model.evaluate(x, y, verbose=0)
    assert before == pytest.approx(reference.evaluate(x, y, verbose=0), rel=1e-6)
    _fit(model, epochs=1)
    _fit(reference, epochs=1)
    # The l2 ramps are one variable now; every l1 keeps its own.
    assert len(model.non_trainable_variables) == 2 * LAYERS + 1
    regularizers = [layer.kernel_regularizer for layer in model.layers[:LAYERS]]
    assert len({id(r.l2) for r in regularizers}) == 1
    assert len({id(r.l1) for r in regularizers}) == LAYERS
    # Each object still holds its arguments in order: files are unchanged.
    for i, reg in enumerate(regularizers):
        assert [v.name for v in reg.non_trainable_variables] == ["l1", "l2"]
        store = {}
        reg.save_own_variables(store)
        l1 = kr.schedules.Linear(0.0, 0.01 * (2 * i + 1), end_step=7)  # kernel i's
        want = [kr.schedules.value_at(s, STEPS - 1) for s in (l1, ramp)]
        np.testing.assert_allclose(_values([store["0"], store["1"]]), want, rtol=1e-6)
    # Steps traced before read the shared variables too.
    after = model.evaluate(x, y, verbose=0)
    assert after == pytest.approx(reference.evaluate(x, y, verbose=0), rel=1e-6)
    assert after != pytest.approx(before, rel=1e-6)
    # Another model's objects with equal schedules are never joined to these:
    # it may be at another step.
    _fit(other, epochs=2)
    assert not {id(v) for v in other.non_trainable_variables} & {
        id(v) for v in model.non_trainable_variables}
    want = kr.schedules.value_at(ramp, STEPS - 1)
    assert _values([regularizers[0].l2]) == pytest.approx([want], rel=1e-6)
    # Training on, the model goes on exactly as the one built on one ramp.
    history, expected = _fit(model).history, _fit(reference).history
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=1e-6)
    np.testing.assert_allclose(history["reg4/l2"], expected["reg4/l2"], rtol=1e-6)


def test_one_schedule_for_two_arguments_saves_both():
    ramp = _ramp()
    reg = kr.ElasticNet(ramp, ramp)
    assert [v.name for v in reg.non_trainable_variables] == ["l1", "l2"]
    store = {}
    reg.save_own_variables(store)
    assert sorted(store) == ["0", "1"]


def test_apply_regularization_copies_share_their_schedule():
    base = keras.Sequential([keras.Input((UNITS,))]
                            + [keras.layers.Dense(UNITS) for _ in range(LAYERS)])
    ramp = _ramp()
    tuned = kr.utils.apply_regularization(base, kernel_regularizer=kr.L2(ramp, name="l2"),
                                          bias_regularizer=kr.L2(ramp, name="l2"))
    regularizers = [layer.kernel_regularizer for layer in tuned.layers]
    assert len({id(r) for r in regularizers}) == LAYERS  # a copy per layer
    assert len(tuned.non_trainable_variables) == 1  # one variable for all


def test_an_unhashable_schedule_class_still_works():
    class Unhashable(keras.optimizers.schedules.LearningRateSchedule):
        __hash__ = None

        def __call__(self, step):
            return keras.ops.cast(step, "float32") * 0.0 + 0.5

        def get_config(self):
            return {}

    schedule = Unhashable()
    a, b = kr.L2(schedule), kr.L2(schedule)
    assert a.non_trainable_variables[0] is not b.non_trainable_variables[0]
    assert float(keras.ops.convert_to_numpy(a.non_trainable_variables[0])) == 0.5


def test_a_shared_variable_is_read_once_per_compiled_step():
    # TensorFlow emits a read op per use of a variable; 500 regularizers on
    # one schedule read it once per traced step. Every backend: the compiled
    # step sees each new value.
    ramp = kr.schedules.Linear(0.1, 0.5, end_step=4)
    model = _mlp(lambda i: kr.L2(ramp, name=f"reg{i}"))
    variable = model.non_trainable_variables[0]
    x, y = _data()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    base = model.evaluate(x, y, verbose=0, batch_size=len(x))
    penalty = sum(float(np.sum(np.square(keras.ops.convert_to_numpy(w))))
                  for w in model.trainable_weights[:-2])  # every Dense but the head
    for value in (0.1, 0.3):
        variable.assign(value)
        loss = model.evaluate(x, y, verbose=0, batch_size=len(x))
        assert loss - base == pytest.approx((value - 0.1) * penalty, rel=1e-4)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        step = tf.function(lambda: sum(layer.kernel_regularizer(layer.kernel)
                                       + layer.bias_regularizer(layer.bias)
                                       for layer in model.layers[:-1]))
        graph = step.get_concrete_function().graph
        reads = [op for op in graph.get_operations() if op.type == "ReadVariableOp"]
        # One per weight and one for the schedule variable.
        assert len(reads) == 2 * LAYERS + 1
