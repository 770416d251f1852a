import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_regx import schedules

STEPS = [0, 1, 5, 10, 15, 20, 25, 30, 50, 1000]


def both(schedule, step):
    """The host (NumPy) value and the graph (keras.ops) value at `step`."""
    host = schedule.value_at(step)
    graph = float(ops.convert_to_numpy(schedule(step)))
    return host, graph


def assert_matches(schedule, formula, steps=STEPS, rtol=1e-6, host_rtol=1e-12):
    """Host values in float64 to `host_rtol`, graph values in float32 to `rtol`."""
    for step in steps:
        expected = formula(step)
        host, graph = both(schedule, step)
        np.testing.assert_allclose(host, expected, rtol=host_rtol, atol=1e-15)
        np.testing.assert_allclose(graph, expected, rtol=rtol, atol=1e-7)


def test_constant():
    assert_matches(schedules.Constant(0.3), lambda s: 0.3)


def test_linear_holds_outside_window():
    s = schedules.Linear(0.2, 1.0, begin_step=10, end_step=30)

    def formula(step):
        t = min(max((step - 10) / 20, 0.0), 1.0)
        return 0.2 + 0.8 * t

    assert_matches(s, formula)
    assert s.value_at(0) == 0.2
    assert s.value_at(10) == 0.2
    assert s.value_at(20) == pytest.approx(0.6)
    assert s.value_at(30) == 1.0
    assert s.value_at(10**6) == 1.0


def test_polynomial_matches_formula_and_keras():
    s = schedules.Polynomial(1.0, 0.1, begin_step=0, end_step=30, power=2.0)

    def formula(step):
        t = min(step / 30, 1.0)
        return 0.1 + 0.9 * (1 - t) ** 2

    assert_matches(s, formula)
    ref = keras.optimizers.schedules.PolynomialDecay(1.0, 30, 0.1, power=2.0)
    for step in STEPS:
        np.testing.assert_allclose(s.value_at(step), float(ref(step)), rtol=1e-6)


def test_polynomial_power_one_is_linear():
    p = schedules.Polynomial(0.0, 2.0, begin_step=5, end_step=25, power=1.0)
    lin = schedules.Linear(0.0, 2.0, begin_step=5, end_step=25)
    for step in STEPS:
        assert p.value_at(step) == pytest.approx(lin.value_at(step))


def test_cosine_both_directions_and_keras():
    decay = schedules.Cosine(1.0, 0.1, begin_step=10, end_step=30)

    def formula(step):
        t = min(max((step - 10) / 20, 0.0), 1.0)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    assert_matches(decay, formula)
    assert decay.value_at(20) == pytest.approx(0.55)
    ref = keras.optimizers.schedules.CosineDecay(1.0, 20, alpha=0.1)
    for step in STEPS:
        np.testing.assert_allclose(
            decay.value_at(step + 10), float(ref(step)), rtol=1e-6
        )
    warmup = schedules.Cosine(0.0, 1.0, end_step=10)
    assert warmup.value_at(0) == 0.0
    assert warmup.value_at(5) == pytest.approx(0.5)
    assert warmup.value_at(10) == 1.0


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential(staircase):
    s = schedules.Exponential(2.0, 0.5, decay_steps=10, begin_step=5, staircase=staircase)

    def formula(step):
        p = max(step - 5, 0) / 10
        if staircase:
            p = math.floor(p)
        return 2.0 * 0.5**p

    assert_matches(s, formula, rtol=1e-5)
    ref = keras.optimizers.schedules.ExponentialDecay(2.0, 10, 0.5, staircase=staircase)
    for step in STEPS:
        np.testing.assert_allclose(s.value_at(step + 5), float(ref(step)), rtol=1e-6)


def test_piecewise_constant_uses_keras_boundary_convention():
    s = schedules.PiecewiseConstant([10, 20], [0.0, 0.5, 1.0])
    ref = keras.optimizers.schedules.PiecewiseConstantDecay([10, 20], [0.0, 0.5, 1.0])
    for step in range(0, 30):
        assert s.value_at(step) == float(ref(step))
        assert float(ops.convert_to_numpy(s(step))) == float(ref(step))
    assert s.value_at(10) == 0.0 and s.value_at(11) == 0.5
    assert s.value_at(20) == 0.5 and s.value_at(21) == 1.0


def test_join_warmup_then_cosine():
    s = schedules.Join(
        [schedules.Linear(0.0, 1.0, end_step=10), schedules.Cosine(1.0, 0.0, end_step=20)],
        boundaries=[10],
    )

    def formula(step):
        if step < 10:
            return step / 10
        t = min((step - 10) / 20, 1.0)
        return 0.5 * (1 + math.cos(math.pi * t))

    assert_matches(s, formula)
    assert s.value_at(10) == 1.0  # continuous at the boundary
    assert s.value_at(20) == pytest.approx(0.5)


def test_join_accepts_keras_schedules_and_nests():
    keras_piece = keras.optimizers.schedules.ExponentialDecay(1.0, 10, 0.5)
    inner = schedules.Join([schedules.Constant(0.0), keras_piece], boundaries=[5])
    s = schedules.Join([inner, schedules.Constant(0.25)], boundaries=[25])

    def formula(step):
        if step < 5:
            return 0.0
        if step < 25:
            return 0.5 ** ((step - 5) / 10)
        return 0.25

    # Keras' own schedules compute in float32, also on the host.
    assert_matches(s, formula, rtol=1e-5, host_rtol=1e-6)


def all_schedules():
    return [
        schedules.Constant(0.5),
        schedules.Linear(0.0, 1.0, begin_step=3, end_step=9),
        schedules.Polynomial(1.0, 0.0, end_step=9, power=3.0),
        schedules.Cosine(1.0, 0.5, begin_step=1, end_step=9),
        schedules.Exponential(1.0, 0.9, decay_steps=3, begin_step=2, staircase=True),
        schedules.PiecewiseConstant([2, 4], [1.0, 2.0, 3.0]),
        schedules.Join(
            [
                schedules.Linear(0.0, 1.0, end_step=4),
                keras.optimizers.schedules.CosineDecay(1.0, 10),
            ],
            boundaries=[4],
        ),
    ]


@pytest.mark.parametrize("schedule", all_schedules(), ids=lambda s: type(s).__name__)
def test_serialization_round_trip(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    assert config["registered_name"].startswith("keras_regx>")
    restored = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    for step in range(12):
        assert restored.value_at(step) == schedule.value_at(step)


@pytest.mark.parametrize("schedule", all_schedules(), ids=lambda s: type(s).__name__)
def test_works_as_learning_rate_schedule(schedule):
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    variable = keras.Variable(np.ones(3, "float32"))
    optimizer.apply([ops.ones(3)], [variable])
    np.testing.assert_allclose(
        ops.convert_to_numpy(variable), 1.0 - schedule.value_at(0), rtol=1e-6
    )


BAD = [
    (schedules.Constant, dict(value=-1.0), ValueError, "`value`.*>= 0.*-1.0"),
    (schedules.Constant, dict(value=float("nan")), ValueError, "`value`.*finite"),
    (schedules.Constant, dict(value="0.1"), TypeError, "`value`.*float.*'0.1'"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, begin_step=5, end_step=5), ValueError, "`end_step`.*> begin_step=5.*end_step=5"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, end_step=None), TypeError, "`end_step`.*integer.*None"),
    (schedules.Linear, dict(initial_value=0.0, final_value=-1.0, end_step=3), ValueError, "`final_value`"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, begin_step=-1, end_step=3), ValueError, "`begin_step`.*>= 0"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, end_step=2.5), TypeError, "`end_step`"),
    (schedules.Polynomial, dict(initial_value=1.0, final_value=0.0, end_step=3, power=0.0), ValueError, "`power`.*> 0"),
    (schedules.Cosine, dict(initial_value=float("inf"), final_value=0.0, end_step=3), ValueError, "`initial_value`.*finite"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=0.0, decay_steps=3), ValueError, "`decay_rate`.*> 0"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=0.5, decay_steps=0), ValueError, "`decay_steps`.*>= 1"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=0.5, decay_steps=3, staircase="yes"), TypeError, "`staircase`"),
    (schedules.PiecewiseConstant, dict(boundaries=[10], values=[0.1]), ValueError, "`values`.*2 values.*Received: 1"),
    (schedules.PiecewiseConstant, dict(boundaries=[10, 5], values=[0.1, 0.2, 0.3]), ValueError, "`boundaries`.*increasing"),
    (schedules.PiecewiseConstant, dict(boundaries=[10], values=[0.1, -0.2]), ValueError, "`values`.*>= 0"),
    (schedules.PiecewiseConstant, dict(boundaries=10, values=[0.1, 0.2]), TypeError, "`boundaries`"),
    (schedules.Join, dict(schedules=[schedules.Constant(1.0)], boundaries=[3]), ValueError, "`schedules`.*2 schedules"),
    (schedules.Join, dict(schedules=[0.1, 0.2], boundaries=[3]), TypeError, "`schedules`.*0.1"),
]


@pytest.mark.parametrize("cls,kwargs,exc,match", BAD)
def test_bad_input_is_refused_at_construction(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kwargs)


def test_config_with_out_of_range_value_is_refused_on_load():
    config = keras.saving.serialize_keras_object(schedules.Linear(0.0, 1.0, end_step=3))
    config["config"]["end_step"] = -4
    with pytest.raises(ValueError, match="`end_step`"):
        keras.saving.deserialize_keras_object(config, safe_mode=True)
