"""Hyperparameters that are a float or follow a schedule over training.

A scheduled hyperparameter lives in a float32 `keras.Variable` tracked by a
Keras `Layer`, so the variable belongs to the model's state: on JAX the jitted
train step only sees the model's tracked variables, and a variable nobody
tracks would be frozen at its first value. The `RegularizationDriver`
callback evaluates the schedules on the host and writes the variables between
steps (see `keras_regx._engine`).

Objects built on one schedule object hold one variable: the schedule's value
at a step is the same for all of them, and every variable costs step time
(each is read by the compiled step, and on JAX passed in and out of it). So
the 48 regularizers of a 24-layer model built with `kr.L2(ramp)` per layer
add one variable to the model's state, not 48. (An object given the same
schedule for two arguments holds two: it saves one value per argument.)
"""

import contextlib
import json
import warnings
import weakref
from typing import NamedTuple

import keras
from keras import ops

from keras_regx import schedules as schedules_lib
from keras_regx._backend import taking_gradients
from keras_regx._validation import check_real
from keras_regx._validation import check_schedulable
from keras_regx._validation import is_schedule

# Keras builds models by running them on symbolic tensors first (symbolic
# scope); JAX's compiled steps read variables through a stateless scope.
try:
    from keras.src.backend.common.stateless_scope import in_stateless_scope
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope
except ImportError:  # pragma: no cover - a future Keras without them

    def in_stateless_scope():
        return False

    def in_symbolic_scope():
        return False


# While Keras loads a `.keras` file it keeps a map of the objects it has
# deserialized (`ObjectSharingScope`): equal configs of regularizers and of
# schedules give one object again.
try:
    from keras.src.saving.serialization_lib import get_shared_object
    from keras.src.saving.serialization_lib import record_object_after_deserialization
except ImportError:  # pragma: no cover - a future Keras without them

    def get_shared_object(obj_id):
        return None

    def record_object_after_deserialization(obj, obj_id):
        pass


class ScheduledHyperparameters:
    """Mixin for `keras.layers.Layer` subclasses with schedulable arguments."""

    def _init_scheduled(self):
        self._scheduled = {}  # argument name -> (schedule, variable)
        self._cells = {}  # argument name -> the `_Cell` of its variable
        self._bounds = {}  # argument name -> (minimum, maximum) of its values
        self._scheduler_attached = False
        self._warned_unscheduled = False

    def _hyperparameter(self, name, value, minimum=0.0, maximum=None):
        """Validates `value`; returns the float, or the variable for a schedule.

        Values must lie in `[minimum, maximum)`; a schedule's values are checked
        on the host each time one is taken (at construction and by the
        scheduler), since a schedule's range is not known in advance.
        """
        value = check_schedulable(name, value, minimum, maximum)
        if not is_schedule(value):
            return value
        self._bounds[name] = (minimum, maximum)
        initial = self._scheduled_value(name, value, 0)
        mine = {id(variable) for _, variable in self._scheduled.values()}
        try:
            slots = _SHARED.setdefault(value, [])
        except TypeError:  # a schedule class that is not hashable: not shared
            slots = []
        slot = next((s for s in slots if id(s[0]) not in mine), None)
        if slot is None:
            # autocast=False: under a mixed precision policy the value stays
            # float32 inside `call` (a rate read as float16 would lose
            # precision and mismatch float32 noise).
            variable = self.add_weight(
                shape=(),
                dtype="float32",
                initializer=keras.initializers.Constant(initial),
                trainable=False,
                autocast=False,
                name=name,
            )
            slot = (variable, _Cell(initial))
            slots.append(slot)
        else:
            self._track_variable(slot[0])
        self._scheduled[name] = (value, slot[0])
        self._cells[name] = slot[1]
        return slot[0]

    def _follow(self, name, variable, cell):
        """Makes argument `name` use `variable` (and its `cell`) in place of its own.

        For the scheduler, which gives the arguments of one model whose
        schedules are equal (so are their values at every step) one variable.
        `variable` takes the place of the argument's own in this object's
        state, so a file keeps one value per argument, in the same order.
        """
        schedule, own = self._scheduled[name]
        if own is variable:
            return
        store = self._non_trainable_variables
        index = next(i for i, v in enumerate(store) if v is own)
        ids = self._tracker.stored_ids["non_trainable_variables"]
        store[index] = variable
        ids.discard(id(own))
        ids.add(id(variable))
        self._post_untrack_variable(own)
        self._post_track_variable(variable)
        setattr(self, name, variable)  # already tracked: only the attribute
        self._scheduled[name] = (schedule, variable)
        self._cells[name] = cell
        slots = _SHARED.get(schedule) if _hashable(schedule) else None
        if slots is not None:  # later objects on `schedule` follow it too
            slots[:] = [(variable, cell) if v is own else (v, c) for v, c in slots]

    @property
    def _current(self):
        """Argument name -> the value its variable holds (host float)."""
        return {name: cell.value for name, cell in self._cells.items()}

    def _hyperparameter_config(self, name, value):
        """The config entry of a hyperparameter: the float or the schedule."""
        if name in self._scheduled:
            return keras.saving.serialize_keras_object(self._scheduled[name][0])
        return value

    @property
    def scheduled_hyperparameters(self):
        """Names of the arguments that follow a schedule."""
        return tuple(self._scheduled)

    def scheduled_values(self):
        """The current values of the scheduled arguments, keyed `name/arg`."""
        return {self._log_key(arg): v for arg, v in self._current.items()}

    def _log_key(self, arg):
        """The key of argument `arg`'s value in `logs`."""
        return f"{self.name}/{arg}"

    def _scheduled_value(self, name, schedule, step):
        """The schedule's value at `step` (host float), checked against the bounds."""
        value = schedules_lib.value_at(schedule, step)
        minimum, maximum = self._bounds[name]
        try:
            check_real(name, value, minimum=minimum, maximum=maximum)
        except ValueError as error:
            raise ValueError(
                f"The schedule of argument `{name}` of `{type(self).__name__}` "
                f"'{self.name}' left the valid range at step {step}: {error}"
            ) from None
        return value

    def _value_at_step(self, name, value, step):
        """`value`, or its schedule evaluated in the graph at `step` (a tensor)."""
        if name not in self._scheduled:
            return value
        return ops.cast(self._scheduled[name][0](step), "float32")

    def _warn_if_unscheduled(self, x=None):
        """Warns once when a training step uses schedules nobody drives.

        Keras' training steps pass the weight variable itself to a regularizer
        (JAX: its value inside a stateless scope) while taking gradients;
        `evaluate()`, `predict()` and direct calls on arrays, as when
        inspecting a penalty, do not warn. Layers pass no `x`: they warn when
        called with `training=True`.
        """
        if not self._scheduled or self._warned_unscheduled:
            return
        if self._scheduler_attached:
            self._warn_if_state_not_fed(x)
            return
        if in_training_step(x):
            self._warned_unscheduled = True
            warnings.warn(
                f"`{type(self).__name__}` '{self.name}' has scheduled "
                f"{', '.join(repr(a) for a in self._scheduled)} but no "
                "`keras_regx.callbacks.RegularizationDriver` (formerly "
                "`RegularizationScheduler`) drives it, so "
                f"they stay at their last values {self._current}. Pass "
                "`callbacks=[keras_regx.callbacks.RegularizationDriver()]` "
                "to `fit()`.",
                stacklevel=3,
            )

    def _warn_if_state_not_fed(self, x):
        """Warns once when a JAX loop threads state without the scheduled values.

        A JAX training loop that passes the model state through `jax.jit`
        itself (Keras' guide loop) computes with the arrays it is given, never
        the variables the scheduler writes, unless it passes them through
        `RegularizationDriver.state_values`.
        """
        scheduler = STATE_FED.get(self)
        if scheduler is None or scheduler.state_fed or not in_stateless_scope():
            return
        if in_training_step(x):
            self._warned_unscheduled = True
            warnings.warn(
                f"`{type(self).__name__}` '{self.name}' has scheduled "
                f"{', '.join(repr(a) for a in self._scheduled)}, driven by a "
                "`RegularizationDriver` in a JAX training loop that passes "
                "the model state itself, but the loop has not passed its "
                "non-trainable values through `scheduler.state_values(...)`, so "
                "the step computes with the values in that state, not the "
                "schedule's. After `callbacks.on_train_batch_begin(step)`, use "
                "`non_trainable_values = scheduler.state_values(non_trainable_values)`.",
                stacklevel=4,
            )


# The interface the scheduler (`keras_regx._engine`, `keras_regx.callbacks`)
# uses on objects with scheduled hyperparameters; only this module reads or
# writes their scheduled state.


class Argument(NamedTuple):
    """A scheduled argument of an object, as the scheduler sees it."""

    name: str
    schedule: object  # the schedule object the argument was built with
    variable: keras.Variable  # the variable the compiled step reads
    cell: "_Cell"  # the value last written into `variable`, a host float
    bounds: tuple  # (minimum, maximum) of its values; maximum may be None


def scheduled_arguments(obj):
    """The scheduled arguments of `obj`, a `ScheduledHyperparameters`."""
    return [Argument(name, schedule, variable, obj._cells[name], obj._bounds[name])
            for name, (schedule, variable) in obj._scheduled.items()]


def value_at(obj, name, step):
    """Argument `name`'s schedule at `step` (host float), checked against its
    bounds: a ValueError names the argument, the object and the step."""
    return obj._scheduled_value(name, obj._scheduled[name][0], step)


def share_variable(obj, name, variable, cell):
    """Makes argument `name` of `obj` use `variable` (see `_follow`)."""
    obj._follow(name, variable, cell)


def log_key(obj, name):
    """The key of argument `name`'s value in `logs`."""
    return obj._log_key(name)


def mark_driven(obj):
    """Records that a scheduler drives `obj` (no warning for undriven schedules)."""
    if not obj._scheduler_attached:  # a tracked attribute: slow to set
        obj._scheduler_attached = True


# object -> the scheduler that drives it in a JAX training loop which threads
# the model state itself (no `fit()`): that loop must pass the state through
# the scheduler's `state_values`.
STATE_FED = weakref.WeakKeyDictionary()


def sharing_key(cls, config):
    """A key for `config` in Keras' map of loaded objects (never an `id()`).

    Keras marks nested objects it saw before with a `shared_object_id`, so
    the same schedule reads differently in the first and later copies of a
    config: those marks are left out of the key. None for a config nested
    too deep to walk (a hostile file): the schedules refuse it by name.
    """

    def unmarked(value):
        if isinstance(value, dict):
            return {k: unmarked(v) for k, v in value.items() if k != "shared_object_id"}
        if isinstance(value, (list, tuple)):
            return [unmarked(v) for v in value]
        return value

    try:
        plain = unmarked(config)
    except RecursionError:
        return None
    try:
        text = json.dumps(plain, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(plain)
    except RecursionError:
        return None
    return ("keras_regx", cls.__module__, cls.__qualname__, text)


class _Cell:
    """The value last written into a scheduled variable, as a host float.

    One per variable, shared by the objects that share the variable, so that
    the scheduler updates it once per step, however many objects hold it.
    """

    __slots__ = ("value", "__weakref__")

    def __init__(self, value):
        self.value = value


# schedule -> [(variable, cell), ...]: the variables of the objects built on
# that schedule object (one more for each further argument of one object that
# takes the same schedule). Entries go when the schedule object does.
_SHARED = weakref.WeakKeyDictionary()


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def revive_schedules(config):
    """`config` with its serialized objects (dicts) deserialized.

    Done before the constructor runs: Keras' `Operation.__new__` walks the
    constructor's arguments with its tree utilities, which on PyTorch recurse
    through a nested dict until Python's limit (a hostile file's schedule
    nested hundreds deep), where the schedules refuse such a config by name.

    While Keras loads a file (inside its object-sharing scope), equal
    schedule configs give one schedule object, so the objects that use it
    share one variable again (they were saved with one value each).
    """
    return {key: _revive(value) if isinstance(value, dict) else value
            for key, value in config.items()}


_SCOPES = []  # a {key: schedule} map per `equal_schedules_shared()` scope


@contextlib.contextmanager
def equal_schedules_shared():
    """Within: configs deserialized by `revive_schedules` with equal schedules
    get one schedule object, as while Keras loads a file (for
    `apply_regularization`, whose copies of a regularizer would otherwise
    each hold their own variables)."""
    _SCOPES.append({})
    try:
        yield
    finally:
        _SCOPES.pop()


def _revive(config):
    key = sharing_key(schedules_lib.Schedule, config)
    if key is not None:
        shared = get_shared_object(key)
        if shared is None and _SCOPES:
            shared = _SCOPES[-1].get(key)
        if shared is not None:
            return shared
    value = keras.saving.deserialize_keras_object(config)
    if key is not None and is_schedule(value):
        record_object_after_deserialization(value, key)
        if _SCOPES:
            _SCOPES[-1][key] = value
    return value


def in_training_step(x):
    """Whether a regularizer called on `x` is called by a training step.

    `x=None` (a layer called with `training=True`) counts as one.
    """
    if in_symbolic_scope():
        return False
    if x is None:
        return True
    return (isinstance(x, keras.Variable) or in_stateless_scope()) and taking_gradients(x)
