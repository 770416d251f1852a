import copy
import json
import math
import time

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import note
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

from keras_regx import _validation
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
    (schedules.Constant, dict(value="0.1"), schedules.ArgumentTypeError, "`value`.*float.*'0.1'"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, begin_step=5, end_step=5), ValueError, "`end_step`.*> begin_step=5.*end_step=5"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, end_step=None), schedules.ArgumentTypeError, "`end_step`.*integer.*None"),
    (schedules.Linear, dict(initial_value=0.0, final_value=-1.0, end_step=3), ValueError, "`final_value`"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, begin_step=-1, end_step=3), ValueError, "`begin_step`.*>= 0"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, end_step=2.5), schedules.ArgumentTypeError, "`end_step`"),
    (schedules.Polynomial, dict(initial_value=1.0, final_value=0.0, end_step=3, power=0.0), ValueError, "`power`.*> 0"),
    (schedules.Cosine, dict(initial_value=float("inf"), final_value=0.0, end_step=3), ValueError, "`initial_value`.*finite"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=0.0, decay_steps=3), ValueError, "`decay_rate`.*> 0"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=0.5, decay_steps=0), ValueError, "`decay_steps`.*>= 1"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=0.5, decay_steps=3, staircase="yes"), schedules.ArgumentTypeError, "`staircase`"),
    (schedules.PiecewiseConstant, dict(boundaries=[10], values=[0.1]), ValueError, "`values`.*2 values.*Received: 1"),
    (schedules.PiecewiseConstant, dict(boundaries=[10, 5], values=[0.1, 0.2, 0.3]), ValueError, "`boundaries`.*increasing"),
    (schedules.PiecewiseConstant, dict(boundaries=[10], values=[0.1, -0.2]), ValueError, "`values`.*>= 0"),
    (schedules.PiecewiseConstant, dict(boundaries=10, values=[0.1, 0.2]), schedules.ArgumentTypeError, "`boundaries`"),
    (schedules.Join, dict(schedules=[schedules.Constant(1.0)], boundaries=[3]), ValueError, "`schedules`.*2 schedules"),
    (schedules.Join, dict(schedules=[0.1, 0.2], boundaries=[3]), schedules.ArgumentTypeError, "`schedules`.*0.1"),
    (schedules.Join, dict(schedules=[schedules.Constant(1.0)] * 2, boundaries=[0]), ValueError, r"`boundaries`.*increasing integers >= 1.*boundaries=\[0\]"),
    (schedules.Join, dict(schedules=[schedules.Constant(1.0)] * 3, boundaries=[0, 5]), ValueError, r"`boundaries`.*>= 1.*\[0, 5\]"),
    # Beyond float32's range: inf once cast to float32 in the compiled step.
    (schedules.Constant, dict(value=1e300), ValueError, r"`value`.*finite float within float32's range.*value=1e\+300"),
    (schedules.Constant, dict(value=10**400), ValueError, "`value`.*finite float within float32's range"),
    (schedules.Linear, dict(initial_value=0.0, final_value=3.5e38, end_step=3), ValueError, "`final_value`.*float32.*3.5e\\+38"),
    (schedules.Polynomial, dict(initial_value=1.0, final_value=0.0, end_step=3, power=1e39), ValueError, "`power`.*float32"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=1e39, decay_steps=3), ValueError, "`decay_rate`.*float32"),
    (schedules.PiecewiseConstant, dict(boundaries=[10], values=[0.1, 1e300]), ValueError, "`values`.*float32"),
    (schedules.PiecewiseConstant, dict(boundaries=[10], values="ab"), schedules.ArgumentTypeError, "`values`.*list of floats.*'ab'"),
    (schedules.PiecewiseConstant, dict(boundaries={10: 1}, values=[0.1, 0.2]), schedules.ArgumentTypeError, "`boundaries`.*dict"),
    (schedules.Join, dict(schedules=schedules.Constant(1.0), boundaries=[]), schedules.ArgumentTypeError, "`schedules`.*list of schedules"),
    # Integers past any float or step counter: a message, not "int too large
    # to convert to float" (and no repr of a 5000-digit int, which Python refuses).
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, end_step=10**400), ValueError, r"`end_step`.*<= 2\*\*63 - 1.*end_step=<an integer with 401 digits>"),
    (schedules.Linear, dict(initial_value=0.0, final_value=1.0, begin_step=2**63, end_step=2**64), ValueError, r"`begin_step`.*<= 2\*\*63 - 1.*begin_step=9223372036854775808"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=0.5, decay_steps=10**400), ValueError, "`decay_steps`.*401 digits"),
    (schedules.Exponential, dict(initial_value=1.0, decay_rate=0.5, decay_steps=3, begin_step=-10**5000), ValueError, "`begin_step`.*begin_step=-<an integer with 5001 digits>"),
    (schedules.PiecewiseConstant, dict(boundaries=[1, 10**400], values=[0.1] * 3), ValueError, "`boundaries`.*401 digits"),
    (schedules.Join, dict(schedules=[schedules.Constant(1.0)] * 2, boundaries=[10**400]), ValueError, "`boundaries`.*401 digits"),
    (schedules.Constant, dict(value=10**5000), ValueError, "`value`.*float32's range.*value=<an integer with 5001 digits>"),
    (schedules.Polynomial, dict(initial_value=1.0, final_value=0.0, end_step=3, power=-10**400), ValueError, "`power`.*<an integer with 401 digits>"),
]


@pytest.mark.parametrize("cls,kwargs,exc,match", BAD)
def test_bad_input_is_refused_at_construction(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kwargs)


def test_piecewise_constant_accepts_a_boundary_at_zero_like_keras():
    s = schedules.PiecewiseConstant([0], [0.5, 1.0])
    ref = keras.optimizers.schedules.PiecewiseConstantDecay([0], [0.5, 1.0])
    for step in range(3):
        assert s.value_at(step) == float(ops.convert_to_numpy(s(step))) == float(ref(step))
    assert s.value_at(0) == 0.5 and s.value_at(1) == 1.0


def test_real_arguments_up_to_float32_max_are_accepted():
    largest = float(np.finfo("float32").max)
    assert _validation.check_real("x", largest) == largest
    assert _validation.check_real("x", -largest) == -largest
    assert schedules.Constant(largest).value == largest
    assert _validation.check_schedulable("x", 1e38) == 1e38
    with pytest.raises(ValueError, match="`x`.*float32's range"):
        _validation.check_real("x", float(np.nextafter(largest, math.inf)))
    with pytest.raises(ValueError, match="`x`.*float32's range"):
        _validation.check_schedulable("x", -1e300, minimum=None)


def test_config_with_out_of_range_value_is_refused_on_load():
    config = keras.saving.serialize_keras_object(schedules.Linear(0.0, 1.0, end_step=3))
    config["config"]["end_step"] = -4
    with pytest.raises(ValueError, match="`end_step`"):
        keras.saving.deserialize_keras_object(config, safe_mode=True)


# Properties over random valid arguments and steps (hypothesis). Steps stay
# below 2**24, where they are exact in float32, the dtype of the graph formula.

PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, database=None)
MAX_STEP = 2**24
# Normal float32 numbers (TensorFlow flushes subnormal ones to zero), as the
# graph computes in float32.
VALUES = st.one_of(st.just(0.0), st.floats(1e-30, 1e6))
POWERS = st.floats(1e-6, 20.0)
TRANSITIONS = [schedules.Linear, schedules.Polynomial, schedules.Cosine]


def windows(max_begin=2**23, max_width=2**23):
    return st.tuples(st.integers(0, max_begin), st.integers(1, max_width)).map(
        lambda bw: (bw[0], bw[0] + bw[1])
    )


@st.composite
def transitions(draw, cls, initial=None, max_window=2**23):
    begin, end = draw(windows(max_window, max_window))
    initial = draw(VALUES) if initial is None else initial
    args = [initial, draw(VALUES), begin, end]
    if cls is schedules.Polynomial:
        args.append(draw(POWERS))
    return cls(*args)


@st.composite
def exponentials(draw, growth=True, staircase=None, initial=None, max_begin=2**23):
    initial = draw(VALUES) if initial is None else initial
    rate = draw(st.floats(1e-3, 1e3 if growth else 1.0))
    staircase = draw(st.booleans()) if staircase is None else staircase
    return schedules.Exponential(
        initial, rate, draw(st.integers(1, 2**20)), draw(st.integers(0, max_begin)), staircase
    )


@st.composite
def piecewise(draw, max_boundary=MAX_STEP - 1, min_boundary=0):
    boundaries = sorted(draw(st.sets(st.integers(min_boundary, max_boundary), max_size=8)))
    values = draw(st.lists(VALUES, min_size=len(boundaries) + 1, max_size=len(boundaries) + 1))
    return schedules.PiecewiseConstant(boundaries, values)


def parts(max_window=2**20):
    """Schedules to join: of every kind, growing exponentials left out (unbounded)."""
    return st.one_of(
        st.builds(schedules.Constant, VALUES),
        *[transitions(cls, max_window=max_window) for cls in TRANSITIONS],
        exponentials(growth=False, max_begin=max_window),
        piecewise(max_boundary=max_window),
    )


@st.composite
def joins(draw):
    pieces = draw(st.lists(parts(), min_size=1, max_size=4))
    boundaries = sorted(draw(st.sets(st.integers(1, MAX_STEP), min_size=len(pieces) - 1,
                                     max_size=len(pieces) - 1)))
    return schedules.Join(pieces, boundaries)


@st.composite
def meeting_joins(draw):
    """Joins of continuous parts, each starting where the previous one stands."""
    boundaries = sorted(draw(st.sets(st.integers(1, MAX_STEP), min_size=1, max_size=3)))
    starts = [0, *boundaries]
    pieces = []
    for i in range(len(starts)):
        initial = None if i == 0 else pieces[-1].value_at(starts[i] - starts[i - 1])
        pieces.append(draw(st.one_of(
            st.builds(schedules.Constant, VALUES if initial is None else st.just(initial)),
            *[transitions(cls, initial, max_window=2**20) for cls in TRANSITIONS],
            exponentials(growth=False, staircase=False, initial=initial, max_begin=2**20),
        )))
    return schedules.Join(pieces, boundaries)


def edges(schedule, start=0):
    """The steps where `schedule` changes regime, counted from `start`."""
    config = schedule.get_config()
    if isinstance(schedule, schedules.Join):
        starts = [0, *config["boundaries"]]
        inner = [e for s, b in zip(schedule.schedules, starts) for e in edges(s, start + b)]
        return [start + b for b in config["boundaries"]] + inner
    points = [config[k] for k in ("begin_step", "end_step") if k in config]
    if isinstance(schedule, schedules.Exponential):  # where stairs begin
        points += [config["begin_step"] + k * config["decay_steps"] for k in (1, 7)]
    return [start + p for p in points + config.get("boundaries", [])]


def steps_for(schedule, last=MAX_STEP):
    """Random steps: anywhere, next to the edges, and between consecutive edges."""
    points = sorted({p for p in edges(schedule) if p <= last})
    near = [st.integers(max(p - 2, 0), min(p + 2, last)) for p in points]
    between = [st.integers(a, b) for a, b in zip(points, points[1:])]
    return st.lists(st.one_of(st.integers(0, last), *near, *between), min_size=1, max_size=4)


def reference(schedule, step, dtype="float64"):
    """The formula of `schedule`'s docstring at `step`, in NumPy `dtype`."""
    f = np.dtype(dtype).type
    c = schedule.get_config()
    step = f(step)
    if isinstance(schedule, schedules.Constant):
        return f(c["value"])
    if isinstance(schedule, schedules.PiecewiseConstant):
        return f(c["values"][np.searchsorted(c["boundaries"], step, side="left")])
    if isinstance(schedule, schedules.Join):
        i = int(np.searchsorted(c["boundaries"], step, side="right"))
        start = 0 if i == 0 else c["boundaries"][i - 1]
        return reference(schedule.schedules[i], step - f(start), dtype)
    if isinstance(schedule, schedules.Exponential):
        p = np.maximum(step - f(c["begin_step"]), f(0)) / f(c["decay_steps"])
        if c["staircase"]:
            p = np.floor(p)
        return f(c["initial_value"]) * f(c["decay_rate"]) ** p
    initial, final = f(c["initial_value"]), f(c["final_value"])
    width = c["end_step"] - c["begin_step"]
    t = np.clip((step - f(c["begin_step"])) / f(width), f(0), f(1))
    if isinstance(schedule, schedules.Linear):
        return initial + (final - initial) * t
    if isinstance(schedule, schedules.Polynomial):
        return final + (initial - final) * (f(1) - t) ** f(c["power"])
    return final + (initial - final) * f(0.5) * (f(1) + np.cos(f(math.pi) * t))


def value_range(schedule, step):
    """[min, max] of the values that define `schedule`, up to `step`.

    An exponential is bounded by its initial value and its un-floored curve at
    `step` (a staircase lies between); a join by the union of its parts' ranges.
    """
    c = schedule.get_config()
    if isinstance(schedule, schedules.Constant):
        values = [c["value"]]
    elif isinstance(schedule, schedules.PiecewiseConstant):
        values = c["values"]
    elif isinstance(schedule, schedules.Join):
        starts = [0, *c["boundaries"]]
        ranges = [value_range(s, max(step - b, 0)) for s, b in zip(schedule.schedules, starts)
                  if b <= step]
        values = [v for r in ranges for v in r]
    elif isinstance(schedule, schedules.Exponential):
        p = max(step - c["begin_step"], 0) / c["decay_steps"]
        values = [c["initial_value"], c["initial_value"] * c["decay_rate"] ** p]
    else:
        values = [c["initial_value"], c["final_value"]]
    return min(values), max(values)


def assert_round_trips(schedule, steps):
    config = schedule.get_config()
    assert type(schedule).from_config(copy.deepcopy(config)).get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    restored = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    assert type(restored) is type(schedule) and restored.get_config() == config
    assert [restored.value_at(s) for s in steps] == [schedule.value_at(s) for s in steps]


def assert_properties(schedule, steps, rtol=1e-5):
    """Finite, within its values, its formula on the host and in the graph, round-trips.

    The graph value is compared with the formula computed in float32, so the
    tolerance is float32's whatever the formula's conditioning.
    """
    note(f"{type(schedule).__name__}: {schedule.get_config()}")
    for step in steps:
        host, graph = both(schedule, step)
        low, high = value_range(schedule, step)
        atol = 1e-6 * high + 1e-30  # float32 rounding of the values themselves
        assert math.isfinite(host) and math.isfinite(graph), (step, host, graph)
        assert low <= host <= high, (step, host, low, high)
        assert low - atol - rtol * low <= graph <= high + atol + rtol * high, (step, graph)
        np.testing.assert_allclose(host, reference(schedule, step), rtol=1e-12,
                                   atol=1e-12 * high + 1e-300, err_msg=f"host, step={step}")
        np.testing.assert_allclose(graph, reference(schedule, step, "float32"), rtol=rtol,
                                   atol=atol, err_msg=f"graph, step={step}")
    assert_round_trips(schedule, steps)


def modulus(schedule, h):
    """A bound on |value(x + h) - value(x)| over all steps x (continuous schedules).

    Exponentials: decaying ones only. The fraction of the window `h` spans is
    padded for the rounding of `t` in float64.
    """
    c = schedule.get_config()
    if isinstance(schedule, schedules.Constant):
        return 0.0
    if isinstance(schedule, schedules.Exponential):
        assert c["decay_rate"] <= 1.0 and not c["staircase"]
        return c["initial_value"] * -math.log(c["decay_rate"]) * h / c["decay_steps"] * 1.01
    delta = abs(c["initial_value"] - c["final_value"])
    s = 1.01 * h / (c["end_step"] - c["begin_step"]) + 1e-15
    if isinstance(schedule, schedules.Linear):
        return delta * s
    if isinstance(schedule, schedules.Cosine):
        return delta * math.pi / 2 * s
    power = c["power"]  # (1 - t) ** p: Lipschitz p for p >= 1, p-Hoelder below
    return delta * max(power, 1.0) * s ** min(power, 1.0)


@PROPERTY
@given(schedule=st.builds(schedules.Constant, VALUES), data=st.data())
def test_constant_properties(schedule, data):
    steps = data.draw(steps_for(schedule))
    assert_properties(schedule, steps)
    assert all(schedule.value_at(s) == schedule.value for s in steps)


@pytest.mark.parametrize("cls", TRANSITIONS, ids=lambda c: c.__name__)
@PROPERTY
@given(data=st.data())
def test_transition_properties(cls, data):
    schedule = data.draw(transitions(cls))
    assert_properties(schedule, data.draw(steps_for(schedule)))


@pytest.mark.parametrize("cls", TRANSITIONS, ids=lambda c: c.__name__)
@PROPERTY
@given(data=st.data())
def test_transition_is_continuous(cls, data):
    schedule = data.draw(transitions(cls))
    c = schedule.get_config()
    begin, end = c["begin_step"], c["end_step"]
    # The end values are held exactly, before and after the window.
    for step in (begin - 0.5, begin, max(begin - 1e6, 0)):
        assert schedule.value_at(step) == c["initial_value"]
    for step in (end, end + 0.5, end + 1e6):
        assert schedule.value_at(step) == c["final_value"]
    scale = max(c["initial_value"], c["final_value"])
    inside = data.draw(st.floats(begin, end))
    for x in (begin, end, inside):
        for fraction in (1e-2, 1e-5, 1e-8):
            for y in (x - fraction * (end - begin), x + fraction * (end - begin)):
                if y >= 0:
                    jump = abs(schedule.value_at(y) - schedule.value_at(x))
                    assert jump <= modulus(schedule, abs(y - x)) + 1e-12 * scale, (x, y, jump)


@PROPERTY
@given(schedule=exponentials(), data=st.data())
def test_exponential_properties(schedule, data):
    c = schedule.get_config()
    last = MAX_STEP
    if c["decay_rate"] > 1.0:  # growth: stop before float32 overflows (1e30)
        growth = math.log(1e30 / max(c["initial_value"], 1.0)) / math.log(c["decay_rate"])
        last = min(last, c["begin_step"] + int(growth * c["decay_steps"]))
    assert_properties(schedule, data.draw(steps_for(schedule, last)), rtol=3e-5)


@PROPERTY
@given(schedule=exponentials(), data=st.data())
def test_exponential_starts_continuously_at_begin_step(schedule, data):
    c = schedule.get_config()
    begin, decay_steps, initial = c["begin_step"], c["decay_steps"], c["initial_value"]
    assert schedule.value_at(begin) == initial
    assert schedule.value_at(data.draw(st.integers(0, begin))) == initial
    log_rate = abs(math.log(c["decay_rate"]))
    for fraction in (0.5, 1e-3, 1e-6):
        h = fraction * decay_steps
        value = schedule.value_at(begin + h)
        if c["staircase"]:  # the first stair is the initial value
            assert value == initial
        else:
            bound = initial * log_rate * fraction * max(c["decay_rate"], 1.0) ** fraction
            assert abs(value - initial) <= 1.01 * bound + 1e-12 * initial


@PROPERTY
@given(schedule=piecewise(), data=st.data())
def test_piecewise_constant_properties(schedule, data):
    steps = data.draw(steps_for(schedule))
    assert_properties(schedule, steps)
    for step in steps:
        host, graph = both(schedule, step)
        assert host in schedule.values
        assert graph in [float(np.float32(v)) for v in schedule.values]


@PROPERTY
@given(schedule=joins(), data=st.data())
def test_join_properties(schedule, data):
    steps = data.draw(steps_for(schedule))
    assert_properties(schedule, steps)
    # From each boundary on, the next part runs on the step counted from it.
    starts = [0, *schedule.boundaries]
    for part, start, stop in zip(schedule.schedules, starts, [*schedule.boundaries, None]):
        assert schedule.value_at(start) == part.value_at(0)
        if stop is not None:
            assert schedule.value_at(stop - 0.5) == part.value_at(stop - 0.5 - start)


@PROPERTY
@given(schedule=meeting_joins())
def test_join_of_meeting_parts_is_continuous(schedule):
    starts = [0, *schedule.boundaries]
    scale = max(value_range(schedule, MAX_STEP)[1], 1e-300)
    for i, boundary in enumerate(schedule.boundaries):
        left, right = schedule.schedules[i], schedule.schedules[i + 1]
        at = schedule.value_at(boundary)
        assert at == left.value_at(boundary - starts[i]) == right.value_at(0)
        for h in (1e-1, 1e-4, 1e-7):
            for part, y in ((left, boundary - h), (right, boundary + h)):
                jump = abs(schedule.value_at(y) - at)
                assert jump <= modulus(part, abs(y - boundary)) + 1e-12 * scale, (boundary, y)


# Found by the property tests: the formula rounded an ulp below `initial_value`.
def test_polynomial_with_a_tiny_power_stays_within_its_values():
    s = schedules.Polynomial(0.01, 3.0, end_step=100, power=1e-20)
    assert 0.01 <= s.value_at(1) <= 3.0  # value_at(1) == 0.009999999999999787


# Integer steps past 2**24, which float32 cannot all hold: the optimizer's
# iteration counter reaches them in long runs. The graph compares steps with
# boundaries and takes offsets from starts in integers.

INT32_MAX = 2**31 - 1  # JAX's integer step (64-bit types disabled)
ITERATIONS_DTYPE = keras.optimizers.SGD().iterations.dtype


def graph_values(schedule, step):
    """The graph value at `step`, as a Python int and as the optimizer's counter."""
    counter = ops.convert_to_tensor(step, ITERATIONS_DTYPE)
    return [float(ops.convert_to_numpy(schedule(s))) for s in (step, counter)]


LATE = [
    (schedules.PiecewiseConstant([2**24], [0.0, 1.0]), [2**24, 2**24 + 1]),
    (schedules.PiecewiseConstant([3 * 10**7], [0.0, 1.0]), [3 * 10**7, 3 * 10**7 + 1]),
    (schedules.Join([schedules.Constant(0.0), schedules.Constant(1.0)], [2**24 + 1]),
     [2**24, 2**24 + 1]),
    (schedules.Join([schedules.Constant(0.0), schedules.PiecewiseConstant([4], [0.0, 1.0])],
                    [3 * 10**7]), [3 * 10**7 + 4, 3 * 10**7 + 5]),
    (schedules.Join([schedules.Constant(0.0),
                     keras.optimizers.schedules.PiecewiseConstantDecay([4], [0.0, 1.0])],
                    [3 * 10**7]), [3 * 10**7 + 4, 3 * 10**7 + 5]),
    (schedules.Exponential(1.0, 0.5, decay_steps=2**24, begin_step=1, staircase=True),
     [2**24, 2**24 + 1]),
    # A late window: the offset from its start is exact, not the rounded step's.
    (schedules.Linear(0.0, 1.0, begin_step=3 * 10**7, end_step=3 * 10**7 + 10),
     [3 * 10**7 + 1, 3 * 10**7 + 5]),
    (schedules.Cosine(1.0, 0.0, begin_step=3 * 10**7, end_step=3 * 10**7 + 10),
     [3 * 10**7 + 1, 3 * 10**7 + 5]),
    (schedules.Exponential(1.0, 0.5, decay_steps=10, begin_step=3 * 10**7),
     [3 * 10**7 + 1, 3 * 10**7 + 5]),
]


@pytest.mark.parametrize(
    "schedule,steps", LATE, ids=lambda x: f"step{x[0]}" if isinstance(x, list) else type(x).__name__
)
def test_graph_is_exact_for_integer_steps_past_2_24(schedule, steps):
    for step in steps:
        host = schedule.value_at(step)
        for graph in graph_values(schedule, step):
            np.testing.assert_allclose(graph, host, rtol=1e-6, err_msg=f"step={step}")


def test_steps_and_boundaries_past_int32():
    # A Python step past int32 is evaluated in float32, as before.
    assert float(ops.convert_to_numpy(schedules.PiecewiseConstant([10], [0.0, 1.0])(2**40))) == 1.0
    # Boundaries an int32 counter cannot reach are not converted to its dtype.
    far = [
        schedules.PiecewiseConstant([2**40], [0.5, 1.0]),
        schedules.Join([schedules.Constant(0.5), schedules.Constant(1.0)], [2**40]),
        schedules.Linear(0.5, 1.0, begin_step=2**40, end_step=2**41),
        schedules.Exponential(0.5, 0.1, decay_steps=2**40, staircase=True),
    ]
    for schedule in far:
        step = ops.convert_to_tensor(INT32_MAX, "int32")
        assert float(ops.convert_to_numpy(schedule(step))) == 0.5 == schedule.value_at(INT32_MAX)


@st.composite
def late_discrete(draw):
    """Piecewise-constant schedules and joins of them, with edges past 2**24."""
    late = piecewise(max_boundary=INT32_MAX - 1, min_boundary=MAX_STEP)
    pieces = draw(st.lists(st.one_of(late, piecewise(max_boundary=2**20)), min_size=1,
                           max_size=3))
    boundaries = sorted(draw(st.sets(st.integers(MAX_STEP, INT32_MAX - 1),
                                     min_size=len(pieces) - 1, max_size=len(pieces) - 1)))
    return schedules.Join(pieces, boundaries) if boundaries else pieces[0]


@PROPERTY
@given(schedule=late_discrete(), data=st.data())
def test_discrete_schedules_are_exact_in_the_graph_past_2_24(schedule, data):
    note(f"{type(schedule).__name__}: {schedule.get_config()}")
    for step in data.draw(steps_for(schedule, INT32_MAX)):
        expected = float(np.float32(schedule.value_at(step)))
        assert graph_values(schedule, step) == [expected, expected], step


# Integer steps past int32: int64 tensors (TensorFlow's optimizer counter;
# PyTorch's is int32, but an int64 step may be passed) and Python ints on every
# backend. Keras' `ops.maximum` and `ops.floor_divide` return int32 for int64
# tensors on PyTorch, which turned the staircase exponential at step 2**31
# into 1.0 (host: 0.25).

PAST_INT32 = [2**31 - 2, 2**31 - 1, 2**31, 2**31 + 1, 2**40, 2**40 + 1]
FAR = [
    schedules.Exponential(1.0, 0.99, decay_steps=2**30, staircase=True),
    schedules.Exponential(1.0, 0.5, decay_steps=2**20, begin_step=2**31 - 2**21, staircase=True),
    schedules.Exponential(1.0, 0.5, decay_steps=2**20, begin_step=2**31 - 2**21),
    schedules.Linear(0.0, 1.0, begin_step=2**40 - 2**30, end_step=2**40 + 2**30),
    schedules.PiecewiseConstant([2**30, 2**31 + 2**20], [0.5, 0.25, 0.125]),
    schedules.PiecewiseConstant(  # the lookup table, past `_UNROLLED_BOUNDARIES`
        [2**30, 2**31 - 2**20, 2**31 + 2**20, 2**35, 2**40 - 2**30, 2**40 + 2**30],
        [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625],
    ),
    schedules.Join(
        [schedules.Constant(0.5),
         schedules.Exponential(1.0, 0.5, decay_steps=2**20, staircase=True),
         schedules.PiecewiseConstant([2**29], [0.25, 0.125])],
        [2**31 - 2**21, 2**40 - 2**30],
    ),
    # A part that sees steps past int32 from its own start.
    schedules.Join(
        [schedules.Constant(0.5),
         schedules.Exponential(1.0, 0.99, decay_steps=2**30, staircase=True)],
        [2**20],
    ),
]


# JAX has no int64 unless 64-bit types are enabled.
INT64 = keras.backend.backend() != "jax"


def integer_steps(step):
    """`step` as a Python int, as the optimizer's counter where it holds it,
    and as an int64 tensor where the backend has them."""
    yield step
    if step <= np.iinfo(ITERATIONS_DTYPE).max:
        yield ops.convert_to_tensor(step, ITERATIONS_DTYPE)
    if INT64:
        yield ops.convert_to_tensor(step, "int64")


@pytest.mark.parametrize("schedule", FAR, ids=lambda s: type(s).__name__)
def test_graph_matches_host_for_integer_steps_past_int32(schedule):
    for step in PAST_INT32:
        host = float(np.float32(schedule.value_at(step)))
        for s in integer_steps(step):
            graph = float(ops.convert_to_numpy(schedule(s)))
            np.testing.assert_allclose(graph, host, rtol=1e-5, atol=1e-30,
                                       err_msg=f"step={step} as {s!r}")


# Long schedules: the value is looked up (binary search), not computed by one
# operation per boundary. 10**6 boundaries took 1.6 s per host evaluation and
# 1.4 s per training step (RegularizationScheduler evaluates each step).


def test_long_piecewise_constant_costs_little_per_step():
    n = 10**6
    schedule = schedules.PiecewiseConstant(range(1, 2 * n, 2), [i % 7 / 8 for i in range(n + 1)])
    checks = [0, 1, 2, 3, 1000, 1001, 2 * n - 1, 2 * n, 10**12]

    def expected(step):  # values[i] while boundaries[i-1] < step <= boundaries[i]
        return min(step // 2, n) % 7 / 8

    start = time.perf_counter()
    assert [schedule.value_at(s) for s in checks] == [expected(s) for s in checks]
    assert time.perf_counter() - start < 1.0  # was 1.6 s for each step
    start = time.perf_counter()
    for step in (2 * n - 1, 2 * n):
        for s in integer_steps(step):
            assert float(ops.convert_to_numpy(schedule(s))) == expected(step)
    assert time.perf_counter() - start < 5.0  # was minutes (10**6 `where`s each)


@pytest.mark.parametrize("size", [0, 1, 4, 5, 64])
def test_piecewise_constant_lookup_and_chain_agree_with_keras(size):
    rng = np.random.default_rng(size)
    boundaries = sorted(rng.choice(1000, size, replace=False).tolist())
    values = rng.uniform(0, 1, size + 1).tolist()
    schedule = schedules.PiecewiseConstant(boundaries, values)
    ref = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values) if size else None
    steps = sorted({0, 999, 1000, *boundaries, *[b + 1 for b in boundaries]})
    for step in steps:
        expected = float(np.float32(values[np.searchsorted(boundaries, step, side="left")]))
        if ref is not None:
            assert float(ops.convert_to_numpy(ref(step))) == expected
        assert float(np.float32(schedule.value_at(step))) == expected
        for s in (step, ops.convert_to_tensor(step, ITERATIONS_DTYPE), float(step)):
            assert float(ops.convert_to_numpy(schedule(s))) == expected, (step, s)
    # A vector of steps (as when plotting a schedule) gives a vector of values.
    graph = ops.convert_to_numpy(schedule(ops.convert_to_tensor(steps, "int32")))
    assert graph.tolist() == [float(ops.convert_to_numpy(schedule(s))) for s in steps]


class CountingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A Keras schedule that counts its evaluations."""

    calls = 0

    def __call__(self, step):
        CountingSchedule.calls += 1
        return ops.convert_to_tensor(1.0)

    def get_config(self):
        return {}


def test_join_evaluates_only_the_running_part_on_the_host():
    parts = [CountingSchedule() for _ in range(500)]
    schedule = schedules.Join(parts, list(range(10, 5000, 10)))
    CountingSchedule.calls = 0
    for step in (0, 9, 10, 4999, 10**6):
        assert schedule.value_at(step) == 1.0
    assert CountingSchedule.calls == 5


def constant_join_config(parts, depth=1):
    """The config of Joins nested `depth` deep, the innermost of `parts` Constants."""
    config = keras.saving.serialize_keras_object(
        schedules.Join([schedules.Constant(0.5)] * 2, [1]))
    constant = config["config"]["schedules"][0]
    config["config"] = {"schedules": [constant] * parts, "boundaries": list(range(1, parts))}
    for _ in range(depth - 1):
        config = {**config, "config": {"schedules": [constant, config], "boundaries": [1]}}
    return config


@pytest.mark.parametrize("parts,depth,match", [
    (10**5, 1, r"`schedules`: expected at most 1000 schedules.*more than 1000.*PiecewiseConstant"),
    (2, 250, r"`schedules`: expected Joins nested at most 32 deep.*more than 32"),
    (2, 10**4, r"`schedules`: expected Joins nested at most 32 deep"),
])
def test_join_refuses_configs_too_large_to_run(parts, depth, match):
    config = constant_join_config(parts, depth)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):  # not a RecursionError
        keras.saving.deserialize_keras_object(config, safe_mode=True)
    with pytest.raises(ValueError, match=match):
        schedules.Join.from_config(config["config"])
    assert time.perf_counter() - start < 5.0  # measured, not deserialized


def test_join_limits_count_nested_joins():
    inner = schedules.Join([schedules.Constant(1.0)] * 500, list(range(1, 500)))
    assert schedules.Join([inner, schedules.Constant(0.0)], [600]).value_at(700) == 0.0
    with pytest.raises(ValueError, match="at most 1000 schedules"):
        schedules.Join([inner, inner, inner], [600, 1200])
    deepest = schedules.Constant(1.0)
    for _ in range(32):
        deepest = schedules.Join([schedules.Constant(0.0), deepest], [1])
    assert deepest.value_at(100) == 1.0 == float(ops.convert_to_numpy(deepest(100)))
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(deepest)))
    assert keras.saving.deserialize_keras_object(config).value_at(100) == 1.0
    with pytest.raises(ValueError, match="nested at most 32 deep"):
        schedules.Join([schedules.Constant(0.0), deepest], [1])


def test_long_values_are_cut_in_messages():
    n = 10**6
    with pytest.raises(ValueError, match=r"`values`.*1000001 values") as info:
        schedules.PiecewiseConstant(range(n), [0.0] * n)
    assert len(str(info.value)) < 400 and "(length 1000000)" in str(info.value)
    with pytest.raises(ValueError, match=r"`boundaries`.*increasing") as info:
        schedules.PiecewiseConstant([*range(n), 5], [0.0] * (n + 2))
    assert len(str(info.value)) < 400
    assert "boundaries[1000000]=5 <= boundaries[999999]=999999" in str(info.value)
    with pytest.raises(TypeError, match=r"`values`") as info:
        schedules.PiecewiseConstant([1], ["x" * 10**6, 0.0])
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: schedules.value_at(0.1, 5), schedules.ArgumentTypeError,
         r"`schedule`: expected a keras_regx schedule or a keras.optimizers.schedules"
         r".LearningRateSchedule. Received: schedule=0.1 \(of type float\)"),
        (lambda: schedules.value_at(lambda step: 0.1, 5), schedules.ArgumentTypeError,
         r"`schedule`.*function"),
        (lambda: schedules.value_at(schedules.Constant(0.1), "5"), schedules.ArgumentTypeError,
         r"`step`: expected a number of steps.*'5' \(of type str\)"),
        (lambda: schedules.Constant(0.1).value_at(None), schedules.ArgumentTypeError, r"`step`"),
        (lambda: schedules.value_at(keras.optimizers.schedules.ExponentialDecay(1.0, 2, 0.5),
                                    [1]), schedules.ArgumentTypeError, r"`step`.*list"),
        (lambda: schedules.Linear(0.0, 1.0, end_step=3).value_at(10**400), ValueError,
         r"`step`: expected a finite number of steps. Received: step=<an integer with 401"),
        (lambda: schedules.Linear(0.0, 1.0, end_step=3).value_at(math.nan), ValueError,
         r"`step`.*finite.*nan"),
        (lambda: schedules.Linear(0.0, 1.0, end_step=3)(10**400), ValueError, r"`step`.*finite"),
        (lambda: schedules.Linear(0.0, 1.0, end_step=3)(True), schedules.ArgumentTypeError,
         r"`step`.*bool"),
    ],
)
def test_bad_steps_and_schedules_are_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# Keras raises ValueError for a strength of the wrong type and TypeError for a
# dropout rate of the wrong type: ours is both, so code written against
# Keras catches what it caught there.

def keras_and_ours():
    import keras_regx as kr

    pairs = [
        ("L1.l1", lambda v: keras.regularizers.L1(l1=v), lambda v: kr.L1(l1=v)),
        ("L2.l2", lambda v: keras.regularizers.L2(l2=v), lambda v: kr.L2(l2=v)),
        ("L1L2.l1", lambda v: keras.regularizers.L1L2(l1=v), lambda v: kr.ElasticNet(l1=v)),
        ("L1L2.l2", lambda v: keras.regularizers.L1L2(l2=v), lambda v: kr.ElasticNet(l2=v)),
        ("Dropout.rate", lambda v: keras.layers.Dropout(rate=v),
         lambda v: kr.layers.ScheduledDropout(rate=v)),
    ]
    for name, theirs, ours in pairs:
        for value in ["0.1", [0.1], None, {"a": 1}, -1.0, math.nan, math.inf]:
            yield pytest.param(theirs, ours, value, name.split(".")[1], id=f"{name}={value!r}")


@pytest.mark.parametrize("theirs,ours,value,arg", list(keras_and_ours()))
def test_bad_strengths_and_rates_raise_what_keras_raises(theirs, ours, value, arg):
    try:
        theirs(value)
    except (TypeError, ValueError) as error:
        expected = type(error)
    else:  # Keras takes None for a regularizer's default strength: so do we
        assert value is None
        want, got = theirs(None).get_config()[arg], ours(None).get_config()[arg]
        assert got == pytest.approx(want, rel=1e-6)
        return
    with pytest.raises(expected) as info:
        ours(value)
    assert isinstance(info.value, (TypeError, ValueError))
    if not isinstance(value, float):  # a wrong type, whichever Keras raised
        assert isinstance(info.value, schedules.ArgumentTypeError)
