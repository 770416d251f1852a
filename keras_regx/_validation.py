"""Argument validation shared by every public module.

Messages follow Keras': "Invalid value for argument `name`: expected ...
Received: name=...". A value of the wrong type raises `ArgumentTypeError`
(both the `ValueError` Keras' regularizers raise and the `TypeError` its
layers raise); a value of the right type out of range raises `ValueError`.
Received values are shown bounded (`shown`), so a message stays readable
whatever a file holds.
"""

import math
import numbers
import reprlib

import keras
import numpy as np

_LRSchedule = keras.optimizers.schedules.LearningRateSchedule

# What a schedulable argument takes: a float, or a schedule of floats.
Schedulable = float | _LRSchedule
# Values end up in float32 (variables, the compiled step): a larger finite
# float would become inf there.
_FLOAT32_MAX = float(np.finfo("float32").max)
# The largest step: the widest counter (int64) cannot go past it.
_MAX_STEP = int(np.iinfo("int64").max)


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a `TypeError` that is also a `ValueError`.

    Keras raises `ValueError` for a strength of the wrong type
    (`keras.regularizers.L2(l2="a")`) and `TypeError` for a dropout rate of
    the wrong type (`keras.layers.Dropout("a")`); this error is both, so code
    written against either catches it (as NumPy's `AxisError` is both a
    `ValueError` and an `IndexError`). Values of the right type out of their
    range raise a plain `ValueError`, as in Keras.
    """


# Received values are shown in messages at most this long: a message stays
# readable whatever a config holds (a list of a million boundaries).
_SHOWN_CHARS = 100
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 6
_REPR.maxdict = 4
_REPR.maxstring = _REPR.maxother = _SHOWN_CHARS
_REPR.maxlong = 40


def shown(value):
    """`repr(value)` for a message, bounded: a long value shows its start and size."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
        if value.bit_length() > 128:  # repr() refuses ints past 4300 digits
            digits = int(math.log10(abs(value))) + 1
            return f"{'-' if value < 0 else ''}<an integer with {digits} digits>"
    try:
        text = _REPR.repr(value)  # elides with "..." past a few items
    except Exception:  # a broken __repr__ must not hide the error reported
        text = object.__repr__(value)
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "..."
    if "..." in text:
        try:
            text += f" (length {len(value)})"
        except Exception:  # no length
            pass
    return text


def describe(value):
    """`shown(value)` and the value's type, for messages about a wrong type."""
    return f"{shown(value)} (of type {type(value).__name__})"



def check_bool(name, value):
    """Returns `value` if it is a bool, or raises naming the argument."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(
            f"Invalid value for argument `{name}`: expected a bool. "
            f"Received: {name}={describe(value)}"
        )
    return value


def check_real(name, value, *, minimum=None, strict=False, maximum=None):
    """Returns `value` as a float, or raises naming the argument."""
    # `type(...) in` first: the ABC check is slow for lists of a million values.
    if type(value) not in (float, int) and (
        isinstance(value, bool) or not isinstance(value, numbers.Real)
    ):
        raise ArgumentTypeError(
            f"Invalid value for argument `{name}`: expected a float. "
            f"Received: {name}={describe(value)}"
        )
    try:
        value = float(value)
    except OverflowError:  # an int beyond float64's range, reported as given
        pass
    if not abs(value) <= _FLOAT32_MAX:  # inf and nan fail too
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a finite float "
            f"within float32's range, |{name}| <= {_FLOAT32_MAX:.8g}. "
            f"Received: {name}={shown(value)}"
        )
    if minimum is not None and (value <= minimum if strict else value < minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        if maximum is not None:
            bound += f" and < {maximum}"
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a float {bound}. "
            f"Received: {name}={value!r}"
        )
    if maximum is not None and value >= maximum:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a float >= "
            f"{minimum} and < {maximum}. Received: {name}={value!r}"
        )
    return value


def check_step(name, value, minimum=0):
    """Returns `value` as an int in [`minimum`, 2**63 - 1], or raises naming the argument."""
    if type(value) is not int and (
        isinstance(value, bool) or not isinstance(value, numbers.Integral)
    ):
        raise ArgumentTypeError(
            f"Invalid value for argument `{name}`: expected an integer "
            f"number of steps. Received: {name}={describe(value)}"
        )
    if not minimum <= value <= _MAX_STEP:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected an integer >= "
            f"{minimum} and <= 2**63 - 1 (the largest step counter). "
            f"Received: {name}={shown(value)}"
        )
    return int(value)


def check_sequence(name, value, expected):
    """Raises unless `value` is a list-like (not a string or a dict)."""
    try:
        ok = not isinstance(value, (str, bytes, dict)) and len(value) >= 0
    except TypeError:
        ok = False
    if not ok:
        raise ArgumentTypeError(
            f"Invalid value for argument `{name}`: expected {expected}. "
            f"Received: {name}={describe(value)}"
        )



def is_schedule(value: object) -> bool:
    """True for keras_regx schedules and Keras learning-rate schedules."""
    return isinstance(value, _LRSchedule)


def check_schedulable(name, value, minimum=0.0, maximum=None):
    """Validates a hyperparameter that is a float or a schedule.

    Returns the schedule unchanged, or the float. A value of the wrong type
    raises `ArgumentTypeError`, both the `ValueError` Keras' regularizers
    raise and the `TypeError` its dropout layers raise; a number out of range
    raises `ValueError`.
    """
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if is_schedule(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(
            f"Invalid value for argument `{name}`: expected a float or a "
            "schedule (a keras_regx.schedules object or a "
            "keras.optimizers.schedules.LearningRateSchedule). "
            f"Received: {name}={describe(value)}"
        )
    return check_real(name, value, minimum=minimum, maximum=maximum)
