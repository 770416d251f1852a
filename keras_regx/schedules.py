"""Step -> value schedules for regularization strengths and rates.

Every schedule here is a `keras.optimizers.schedules.LearningRateSchedule`, so it
also works as a learning-rate schedule and serializes like one. The formula of
each schedule is written once, against an array namespace: `keras.ops` when the
schedule is called inside a graph (`schedule(step)`), NumPy when the
`RegularizationDriver` callback evaluates it on the host
(`schedule.value_at(step)`), which costs microseconds instead of a round trip
through the backend.

`step` counts optimizer updates already applied (0 on the first batch), the
convention of Keras learning-rate schedules.

Build a schedule once and pass that object to every regularizer or layer that
follows it: they then hold one variable between them, which keeps the step
time that of constant strengths however many objects there are.
"""

import bisect
import math
import numbers
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import check_bool
from keras_regx._validation import check_real
from keras_regx._validation import check_sequence
from keras_regx._validation import check_step
from keras_regx._validation import describe
from keras_regx._validation import is_schedule
from keras_regx._validation import shown

__all__ = [
    "Constant",
    "Cosine",
    "Exponential",
    "Join",
    "Linear",
    "PiecewiseConstant",
    "Polynomial",
    "Schedule",
    "value_at",
]

_PACKAGE = "keras_regx"
_LRSchedule = keras.optimizers.schedules.LearningRateSchedule


def _check_window(begin_step, end_step):
    begin_step = check_step("begin_step", begin_step)
    end_step = check_step("end_step", end_step)
    if end_step <= begin_step:
        raise ValueError(
            "Invalid value for argument `end_step`: expected an integer > "
            f"begin_step={begin_step}. Received: end_step={end_step}"
        )
    return begin_step, end_step


def _check_boundaries(boundaries, minimum=0):
    check_sequence("boundaries", boundaries, "a list of increasing integers")
    boundaries = [check_step("boundaries", b) for b in boundaries]
    bad = next(
        (i for i in range(1, len(boundaries)) if boundaries[i] <= boundaries[i - 1]),
        None,
    )
    if bad is not None or (boundaries and boundaries[0] < minimum):
        where = (
            f"boundaries[0]={boundaries[0]}" if bad is None
            else f"boundaries[{bad}]={boundaries[bad]} <= "
            f"boundaries[{bad - 1}]={boundaries[bad - 1]}"
        )
        raise ValueError(
            "Invalid value for argument `boundaries`: expected strictly "
            f"increasing integers >= {minimum}. Received: "
            f"boundaries={shown(boundaries)}, where {where}"
        )
    return boundaries


def _host_step(step):
    """`step` as a NumPy float64 for the host formula, or raises naming `step`."""
    if type(step) not in (int, float) and (
        isinstance(step, bool) or not isinstance(step, numbers.Real)
    ):
        raise ArgumentTypeError(
            "Invalid value for argument `step`: expected a number of steps "
            f"(an int or a float). Received: step={describe(step)}"
        )
    try:
        host = np.float64(step)
    except OverflowError:  # an int beyond float64's range
        host = np.float64(np.inf)
    if not math.isfinite(host):
        raise ValueError(
            "Invalid value for argument `step`: expected a finite number of "
            f"steps. Received: step={shown(step)}"
        )
    return host


def _graph_step(step):
    """`step` for the graph formula: an integer tensor if it is one, else float32.

    float32 holds integers exactly only up to 2**24, so an integer step (the
    optimizer's iteration counter) stays integer where it meets a boundary or
    a start: comparisons and offsets are done in integers, and only offsets
    are cast to float32.
    """
    if isinstance(step, numbers.Number):
        _host_step(step)  # a clear error for a bool, an int too large, nan
        if isinstance(step, numbers.Integral):
            if abs(step) <= np.iinfo("int32").max:  # JAX's default integer
                return ops.convert_to_tensor(step, "int32")
            return ops.cast(float(step), "float32")
    step = ops.convert_to_tensor(step)
    if _is_integer(step):
        return step
    return ops.cast(step, "float32")


def _is_integer(step):
    return keras.backend.standardize_dtype(step.dtype).startswith("int")


def _int_max(step):
    return int(np.iinfo(keras.backend.standardize_dtype(step.dtype)).max)


def _unreachable(step, value, xp):
    """Whether an integer graph `step` can never reach `value` (over its dtype's max)."""
    return xp is not np and _is_integer(step) and value > _int_max(step)


def _as_float(step, xp):
    return step if xp is np else ops.cast(step, "float32")


def _elapsed(step, start, xp):
    """`step - start` as a float, exact for integer graph steps (< 2**24 apart).

    Callers clip negative results to 0, so a `start` the step's dtype cannot
    hold is replaced by the largest value it can.
    """
    if xp is np or not _is_integer(step):
        return step - float(start)  # JAX would read a Python int as int32
    return ops.cast(_integer_elapsed(step, start), "float32")


def _integer_elapsed(step, start):
    """`step - start` in an integer graph step's dtype (`start` capped at its max)."""
    return step - min(start, _int_max(step))


def _nonnegative(x, xp):
    """`max(x, 0)`, keeping an integer graph tensor's dtype.

    Keras' `ops.maximum` and `ops.floor_divide` return int32 for int64
    tensors on PyTorch (Keras 3.15), which wraps steps past 2**31.
    """
    if xp is np or not _is_integer(x):
        return xp.maximum(x, 0.0)
    return ops.where(x > 0, x, ops.zeros_like(x))


class Schedule(_LRSchedule):
    """Base class of keras_regx schedules.

    Subclasses implement `_formula(step, xp)` with `xp` either `keras.ops` or
    `numpy`, using only functions both provide, and `step` a float64 scalar
    (NumPy) or a float32 or integer tensor (`keras.ops`, see `_graph_step`):
    offsets from a step go through `_elapsed`.
    """

    def __call__(self, step):
        return self._formula(_graph_step(step), ops)

    def value_at(self, step: int | float) -> float:
        """Returns the schedule's value at `step` as a Python float (host)."""
        return float(self._formula(_host_step(step), np))

    def _formula(self, step, xp):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def value_at(schedule: _LRSchedule, step: int | float) -> float:
    """Evaluates any schedule on the host: ours through NumPy, Keras' eagerly.

    Args:
        schedule: a keras_regx schedule or a Keras `LearningRateSchedule`.
        step: int >= 0, the number of optimizer updates already applied.

    Returns:
        The value as a Python float.

    Example:
    ```python
    >>> kr.schedules.value_at(kr.schedules.Linear(0.0, 1.0, end_step=4), 1)
    0.25
    >>> kr.schedules.value_at(keras.optimizers.schedules.ExponentialDecay(1.0, 2, 0.5), 2)
    0.5
    ```
    """
    if isinstance(schedule, Schedule):
        return schedule.value_at(step)
    if not is_schedule(schedule):
        raise ArgumentTypeError(
            "Invalid value for argument `schedule`: expected a keras_regx "
            "schedule or a keras.optimizers.schedules.LearningRateSchedule. "
            f"Received: schedule={describe(schedule)}"
        )
    _host_step(step)
    return float(ops.convert_to_numpy(schedule(step)))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Constant(Schedule):
    """A schedule that always returns `value`.

    Args:
        value: float >= 0.

    Example:
    ```python
    >>> kr.schedules.Constant(0.1).value_at(1000)
    0.1
    ```
    """

    def __init__(self, value: float):
        self.value = check_real("value", value, minimum=0.0)

    def _formula(self, step, xp):
        return xp.zeros_like(_as_float(step, xp)) + self.value

    def get_config(self):
        return {"value": self.value}


class _Transition(Schedule):
    """Moves from `initial_value` to `final_value` over [begin_step, end_step].

    `value = final + (initial - final) * decay(t)`, with
    `t = clip((step - begin_step) / (end_step - begin_step), 0, 1)` and
    `decay` falling from 1 at t = 0 to 0 at t = 1; subclasses define `decay`.
    """

    def __init__(
        self,
        initial_value: float,
        final_value: float,
        begin_step: int = 0,
        end_step: int | None = None,
    ):
        self.initial_value = check_real("initial_value", initial_value, minimum=0.0)
        self.final_value = check_real("final_value", final_value, minimum=0.0)
        self.begin_step, self.end_step = _check_window(begin_step, end_step)

    def _decay(self, t, xp):
        raise NotImplementedError

    def _formula(self, step, xp):
        elapsed = _elapsed(step, self.begin_step, xp)
        # A float width: JAX would read a Python int as int32.
        t = xp.clip(elapsed / float(self.end_step - self.begin_step), 0.0, 1.0)
        delta = self.initial_value - self.final_value
        value = self.final_value + delta * self._decay(t, xp)
        # final + (initial - final) * decay can round an ulp past either
        # value (e.g. when decay rounds to 1 inside the window): keep it
        # within them, and hold the end values exactly.
        low, high = sorted((self.initial_value, self.final_value))
        value = xp.clip(value, low, high)
        value = xp.where(t <= 0.0, self.initial_value, value)
        return xp.where(t >= 1.0, self.final_value, value)

    def get_config(self):
        return {
            "initial_value": self.initial_value,
            "final_value": self.final_value,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Linear(_Transition):
    """Linear interpolation from `initial_value` to `final_value`.

    `value = initial + (final - initial) * t` with
    `t = clip((step - begin_step) / (end_step - begin_step), 0, 1)`: it holds
    `initial_value` before `begin_step` and `final_value` after `end_step`.

    Args:
        initial_value: float >= 0, the value up to `begin_step`.
        final_value: float >= 0, the value from `end_step` on.
        begin_step: int >= 0, where the ramp starts.
        end_step: int > begin_step, where the ramp ends.

    Example:
    ```python
    >>> warmup = kr.schedules.Linear(0.0, 1e-3, begin_step=0, end_step=100)
    >>> warmup.value_at(50)
    0.0005
    ```
    """

    def _decay(self, t, xp):
        return 1.0 - t


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Polynomial(_Transition):
    """Polynomial transition from `initial_value` to `final_value`.

    `value = final + (initial - final) * (1 - t) ** power` with `t` the clipped
    fraction of the window as in `Linear` (the form of Keras' `PolynomialDecay`).
    `power=1` is `Linear`.

    Args:
        initial_value: float >= 0, the value up to `begin_step`.
        final_value: float >= 0, the value from `end_step` on.
        begin_step: int >= 0.
        end_step: int > begin_step.
        power: float > 0, the exponent.

    Example:
    ```python
    >>> s = kr.schedules.Polynomial(1.0, 0.0, begin_step=0, end_step=10, power=2.0)
    >>> s.value_at(5)
    0.25
    ```
    """

    def __init__(
        self,
        initial_value: float,
        final_value: float,
        begin_step: int = 0,
        end_step: int | None = None,
        power: float = 2.0,
    ):
        super().__init__(initial_value, final_value, begin_step, end_step)
        self.power = check_real("power", power, minimum=0.0, strict=True)

    def _decay(self, t, xp):
        return xp.power(1.0 - t, self.power)

    def get_config(self):
        return {**super().get_config(), "power": self.power}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Cosine(_Transition):
    """Half-cosine transition from `initial_value` to `final_value`.

    `value = final + (initial - final) * 0.5 * (1 + cos(pi * t))` with `t` the
    clipped fraction of the window as in `Linear`. Works in both directions:
    a cosine decay (`initial > final`) or a smooth warm-up (`initial < final`).

    Args:
        initial_value: float >= 0, the value up to `begin_step`.
        final_value: float >= 0, the value from `end_step` on.
        begin_step: int >= 0.
        end_step: int > begin_step.

    Example:
    ```python
    >>> kr.schedules.Cosine(1.0, 0.0, begin_step=0, end_step=100).value_at(50)
    0.5
    ```
    """

    def _decay(self, t, xp):
        return 0.5 * (1.0 + xp.cos(math.pi * t))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Exponential(Schedule):
    """Exponential decay (or growth) that starts at `begin_step`.

    `value = initial * decay_rate ** (max(step - begin_step, 0) / decay_steps)`,
    with the exponent floored when `staircase=True` (Keras' `ExponentialDecay`,
    delayed to `begin_step`).

    Args:
        initial_value: float >= 0.
        decay_rate: float > 0; below 1 decays, above 1 grows.
        decay_steps: int > 0, steps per factor of `decay_rate`.
        begin_step: int >= 0, the value is held at `initial_value` before it.
        staircase: bool, decay in discrete intervals.

    Example:
    ```python
    >>> kr.schedules.Exponential(1.0, 0.5, decay_steps=10).value_at(20)
    0.25
    ```
    """

    def __init__(
        self,
        initial_value: float,
        decay_rate: float,
        decay_steps: int,
        begin_step: int = 0,
        staircase: bool = False,
    ):
        self.initial_value = check_real("initial_value", initial_value, minimum=0.0)
        self.decay_rate = check_real("decay_rate", decay_rate, minimum=0.0, strict=True)
        self.decay_steps = check_step("decay_steps", decay_steps, minimum=1)
        self.begin_step = check_step("begin_step", begin_step)
        self.staircase = check_bool("staircase", staircase)

    def _formula(self, step, xp):
        elapsed = xp.maximum(_elapsed(step, self.begin_step, xp), 0.0)
        p = elapsed / float(self.decay_steps)
        if self.staircase:
            if xp is np or not _is_integer(step):
                p = xp.floor(p)
            elif _unreachable(step, self.decay_steps, xp):
                p = xp.zeros_like(p)
            else:  # in integers: float32 could round a step across a stair
                steps = _nonnegative(_integer_elapsed(step, self.begin_step), xp)
                # `//`, not ops.floor_divide: see `_nonnegative`.
                p = ops.cast(steps // self.decay_steps, "float32")
        return self.initial_value * xp.power(self.decay_rate, p)

    def get_config(self):
        return {
            "initial_value": self.initial_value,
            "decay_rate": self.decay_rate,
            "decay_steps": self.decay_steps,
            "begin_step": self.begin_step,
            "staircase": self.staircase,
        }


# Up to this many boundaries the graph formula is a chain of `where`s, one per
# boundary; past it a lookup table (`searchsorted`), whose cost barely grows
# with its length but is a few ops more than a short chain (eager PyTorch
# runs each op of a training step on its own).
_UNROLLED_BOUNDARIES = 4


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PiecewiseConstant(Schedule):
    """Constant pieces between step boundaries, with Keras' convention.

    `values[0]` while `step <= boundaries[0]`, `values[i]` while
    `boundaries[i-1] < step <= boundaries[i]`, and `values[-1]` after the last
    boundary (as `keras.optimizers.schedules.PiecewiseConstantDecay`).

    The value is looked up by binary search, so a step costs about the same
    with a hundred thousand boundaries as with ten.

    Args:
        boundaries: strictly increasing ints >= 0.
        values: floats >= 0, one more than `boundaries`.

    Example:
    ```python
    >>> s = kr.schedules.PiecewiseConstant([100, 200], [0.0, 1e-4, 1e-3])
    >>> s.value_at(100), s.value_at(101), s.value_at(500)
    (0.0, 0.0001, 0.001)
    ```
    """

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        self.boundaries = _check_boundaries(boundaries)
        check_sequence("values", values, "a list of floats")
        if len(values) != len(self.boundaries) + 1:
            raise ValueError(
                "Invalid value for argument `values`: expected "
                f"len(boundaries) + 1 = {len(self.boundaries) + 1} values. "
                f"Received: {len(values)} values={shown(values)}"
            )
        self.values = [check_real("values", v, minimum=0.0) for v in values]
        # The host formula compares float64 steps, as NumPy compares a float64
        # with an int.
        self._host_boundaries = np.asarray(self.boundaries, "float64")
        self._host_values = np.asarray(self.values, "float64")
        self._tables = {}  # graph step dtype -> (boundaries, values) arrays

    def _table(self, step):
        """The boundaries an integer graph `step` can cross, in its dtype,
        with their values in float32 (float32 boundaries for a float step)."""
        dtype = keras.backend.standardize_dtype(step.dtype)
        if dtype not in self._tables:
            reachable = len(self.boundaries)
            if _is_integer(step):  # `step > boundary` never holds past its max
                reachable = bisect.bisect_left(self.boundaries, _int_max(step))
            self._tables[dtype] = (
                np.asarray(self.boundaries[:reachable], dtype),
                np.asarray(self.values[: reachable + 1], "float32"),
            )
        return self._tables[dtype]

    def _formula(self, step, xp):
        if xp is np:
            index = np.searchsorted(self._host_boundaries, step, side="left")
            return self._host_values[index]
        boundaries, values = self._table(step)
        if len(boundaries) <= _UNROLLED_BOUNDARIES:
            value = ops.zeros_like(_as_float(step, xp)) + self.values[0]
            # Python numbers of the step's kind: JAX reads a Python int as
            # int32, which a float step's boundary may overflow.
            for boundary, v in zip(boundaries.tolist(), self.values[1:]):
                value = ops.where(step > boundary, v, value)
            return value
        # The number of boundaries below the step indexes its value.
        index = ops.searchsorted(
            ops.convert_to_tensor(boundaries), ops.reshape(step, (-1,)), side="left"
        )
        value = ops.take(ops.convert_to_tensor(values), index)
        return ops.reshape(value, ops.shape(step))

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


# A Join evaluates every part in the graph formula, so the parts cost ops in
# each compiled training step: their number is bounded (a long run of constant
# pieces is a `PiecewiseConstant`). The nesting depth is bounded so that
# evaluating and (de)serializing a Join stays far from Python's recursion limit.
_MAX_JOIN_PARTS = 1000
_MAX_JOIN_DEPTH = 32


def _looks_like_join(config):
    """Whether a serialized schedule holds nested schedules, as a Join's does."""
    inner = config.get("config")
    return isinstance(inner, dict) and isinstance(inner.get("schedules"), (list, tuple))


def _join_size(schedules):
    """(depth, parts) of a Join of `schedules`: its levels of nested Joins and
    the schedules at their leaves, configs not yet deserialized included.

    Walks without recursion and stops once past a limit, so a config nested
    thousands deep, or a list of a million schedules, is not walked through.
    """
    depth, parts = 1, 0
    stack = [(iter(schedules), 1)]  # the lists being walked, innermost last
    while stack and depth <= _MAX_JOIN_DEPTH and parts <= _MAX_JOIN_PARTS:
        items, level = stack[-1]
        s = next(items, stack)  # `stack` marks the end of `items`
        if s is stack:
            stack.pop()
        elif isinstance(s, Join):
            depth = max(depth, level + getattr(s, "_depth", 1))
            parts += getattr(s, "_parts", 1)
        elif isinstance(s, dict) and _looks_like_join(s):
            depth = max(depth, level + 1)
            stack.append((iter(s["config"]["schedules"]), level + 1))
        else:
            parts += 1
    return depth, parts


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Join(Schedule):
    """Joins schedules one after another at step boundaries.

    `schedules[0]` runs until `boundaries[0]`; from step `boundaries[i-1]` on,
    `schedules[i]` runs and sees the step counted from its own start,
    `step - boundaries[i-1]` (the convention of optax's `join_schedules`).
    Any schedule may be joined, ours or Keras' learning-rate schedules.

    Every part is evaluated in each compiled training step, so a Join holds at
    most 1000 schedules, those of nested Joins included, nested at most 32
    deep (a longer run of constant pieces is a `PiecewiseConstant`).

    Args:
        schedules: list of schedules.
        boundaries: strictly increasing ints > 0, one fewer than `schedules`.
            (A boundary at 0 would skip `schedules[0]`.)

    Example:
    ```python
    >>> warmup_then_cosine = kr.schedules.Join(
    ...     [kr.schedules.Linear(0.0, 1e-3, end_step=100),
    ...      kr.schedules.Cosine(1e-3, 0.0, end_step=900)],
    ...     boundaries=[100])
    >>> warmup_then_cosine.value_at(100)
    0.001
    ```
    """

    def __init__(self, schedules: Sequence[_LRSchedule], boundaries: Sequence[int]):
        check_sequence("schedules", schedules, "a list of schedules")
        # Measured before deserializing any config in `schedules`.
        depth, parts = _join_size(schedules)
        if depth > _MAX_JOIN_DEPTH:
            raise ValueError(
                "Invalid value for argument `schedules`: expected Joins nested "
                f"at most {_MAX_JOIN_DEPTH} deep. Received: Joins nested more "
                f"than {_MAX_JOIN_DEPTH} deep. Join the parts in one Join, with "
                "each inner boundary shifted by the start of its Join."
            )
        if parts > _MAX_JOIN_PARTS:
            raise ValueError(
                "Invalid value for argument `schedules`: expected at most "
                f"{_MAX_JOIN_PARTS} schedules, those of nested Joins included "
                "(each is evaluated in every training step). Received: more "
                f"than {_MAX_JOIN_PARTS} schedules. For constant pieces use a "
                "PiecewiseConstant, whose cost does not grow with its length."
            )
        schedules = [
            keras.saving.deserialize_keras_object(s) if isinstance(s, dict) else s
            for s in schedules
        ]
        for s in schedules:
            if not isinstance(s, _LRSchedule):
                raise ArgumentTypeError(
                    "Invalid value for argument `schedules`: expected "
                    "keras_regx.schedules or keras.optimizers.schedules objects. "
                    f"Received an element {describe(s)}"
                )
        self.schedules = list(schedules)
        self.boundaries = _check_boundaries(boundaries, minimum=1)
        if len(self.schedules) != len(self.boundaries) + 1:
            raise ValueError(
                "Invalid value for argument `schedules`: expected "
                f"len(boundaries) + 1 = {len(self.boundaries) + 1} schedules. "
                f"Received: {len(self.schedules)} schedules"
            )
        self._depth, self._parts = depth, parts
        self._host_boundaries = np.asarray(self.boundaries, "float64")

    def _piece(self, schedule, step, xp):
        if isinstance(schedule, Schedule):
            return schedule._formula(step, xp)
        if xp is np:
            return np.float64(value_at(schedule, step))
        return ops.cast(schedule(step), "float32")

    def _formula(self, step, xp):
        if xp is np:  # only the part that runs at `step`
            i = int(np.searchsorted(self._host_boundaries, step, side="right"))
            start = self.boundaries[i - 1] if i else 0
            return self._piece(self.schedules[i], step - start, xp)
        value = self._piece(self.schedules[0], step, xp)
        # An integer graph step stays integer, so that the parts see exact
        # steps from their start (`_graph_step`).
        for boundary, schedule in zip(self.boundaries, self.schedules[1:]):
            if _unreachable(step, boundary, xp):
                break
            if not _is_integer(step):  # JAX would read a Python int as int32
                boundary = float(boundary)
            piece = self._piece(schedule, _nonnegative(step - boundary, xp), xp)
            value = xp.where(step >= boundary, piece, value)
        return value

    def get_config(self):
        return {
            "schedules": [
                keras.saving.serialize_keras_object(s) for s in self.schedules
            ],
            "boundaries": list(self.boundaries),
        }
