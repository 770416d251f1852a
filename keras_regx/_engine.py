"""The schedule engine: moves every scheduled value of a model to a step.

`RegularizationDriver` calls it before each training step. Its cost must
not grow with the number of scheduled objects, so:

- each distinct schedule is evaluated once per step on the host, however many
  objects use it: schedules are grouped by their config (equal configs give
  equal values; keras_regx's and Keras' own schedules, whose configs say all
  they compute) or, for other schedule classes, by identity;
- each scheduled variable is written once (objects built on one schedule
  object share a variable, see `keras_regx._hyperparameters`, and
  `share_equal_schedules` joins a model's equal schedules when `fit()`
  starts), and only when its value changes;
- the writes of one step go to the backend together
  (`keras_regx._backend.variable_writer`, `JaxStateWriter`): TensorFlow
  assign ops for a few, one compiled function for many, JAX the state of the
  running `fit()`, PyTorch in-place fills.
"""

import json

from keras_regx._hyperparameters import scheduled_arguments
from keras_regx._hyperparameters import share_variable
from keras_regx._hyperparameters import value_at

_BUILTIN_MODULES = ("keras_regx.", "keras.")


def schedule_key(schedule):
    """Schedules with equal keys have equal values at every step: keras_regx's
    and Keras' own by their configs (which say all they compute), any other
    by identity."""
    cls = type(schedule)
    if cls.__module__.startswith(_BUILTIN_MODULES):
        try:
            config = json.dumps(schedule.get_config(), sort_keys=True)
            return cls.__module__, cls.__qualname__, config
        except (TypeError, ValueError, RecursionError, NotImplementedError):
            pass  # a config that does not serialize, or none
    return id(schedule)


def schedule_keys():
    """`key_of(schedule)`: `schedule_key`, computed once per schedule object
    (a key serializes the schedule's config) for as long as `key_of` lives."""
    keys = {}  # id(schedule) -> (schedule, key): the schedule kept, its id not reused

    def key_of(schedule):
        entry = keys.get(id(schedule))
        if entry is None:
            entry = keys[id(schedule)] = (schedule, schedule_key(schedule))
        return entry[1]

    return key_of


def share_equal_schedules(objects, key_of=None):
    """Gives the arguments of `objects` that follow equal schedules one variable.

    Equal schedules (equal keys) have equal values at every step, so the
    arguments that follow them can share one variable, which the scheduler
    then writes once and the compiled step reads once (every variable costs
    step time: on JAX it is passed in and out of the jitted step). An object
    keeps one variable per argument (its file holds one value each): the
    k-th of its arguments on a schedule shares the k-th variable of that
    schedule. Only `objects` (one model's) are joined, never objects of
    models trained apart, which may be at other steps.

    `key_of`: a `schedule_keys()` function to share with a `ScheduleEngine`.
    Returns whether an argument changed variable (steps traced before read
    the old ones).
    """
    key_of = key_of or schedule_keys()
    shared, changed = {}, False
    for obj in objects:
        taken = {}  # key -> how many of this object's arguments follow it
        for arg in scheduled_arguments(obj):
            key = key_of(arg.schedule), arg.bounds
            k = taken[key] = taken.get(key, -1) + 1
            slots = shared.setdefault(key, [])
            if k == len(slots):
                slots.append((arg.variable, arg.cell))
            elif slots[k][0] is not arg.variable:
                share_variable(obj, arg.name, *slots[k])
                changed = True
    return changed


class _Group:
    """One distinct schedule (and range), the variables that follow it."""

    __slots__ = ("owner", "arg", "variables", "cells", "value")

    def __init__(self, owner, arg):
        self.owner, self.arg = owner, arg
        self.variables, self.cells = [], []
        self.value = None


class ScheduleEngine:
    """Evaluates and writes the scheduled values of `objects`.

    Args:
        objects: the objects with scheduled hyperparameters (each once).
        keys: `{(id(object), argument): key in logs}`.
        key_of: a `schedule_keys()` function (shared with
            `share_equal_schedules`), or None for a new one.
    """

    def __init__(self, objects, keys, key_of=None):
        key_of = key_of or schedule_keys()
        groups, seen = {}, set()
        log_cells = {}  # key in logs -> cell (equal keys hold equal values)
        for obj in objects:
            for arg in scheduled_arguments(obj):
                log_cells.setdefault(keys[(id(obj), arg.name)], arg.cell)
                key = key_of(arg.schedule), arg.bounds
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group(obj, arg.name)
                if id(arg.variable) not in seen:
                    seen.add(id(arg.variable))
                    group.variables.append(arg.variable)
                    group.cells.append(arg.cell)
        self.groups = list(groups.values())
        self.variables = [v for g in self.groups for v in g.variables]
        self.cells = [c for g in self.groups for c in g.cells]
        self._log_keys = list(log_cells)
        self._log_cells = list(log_cells.values())

    def set_step(self, step, write, every=False):
        """Moves every schedule to `step`; returns whether a value changed.

        `write(pairs)` stores the `(variable, value)` pairs that changed (all
        of them with `every=True`: the variables may hold other values than
        the ones written last, after a backup was restored, the weights
        loaded, or a JAX `fit()` crashed before its last value ran).
        """
        pairs = []
        for group in self.groups:
            value = value_at(group.owner, group.arg, step)
            if every or value != group.value:
                group.value = value
                for variable, cell in zip(group.variables, group.cells):
                    cell.value = value
                    pairs.append((variable, value))
        if pairs:
            write(pairs)
        return bool(pairs)

    def current_values(self):
        """The value each of `variables` was written last, in that order."""
        return [cell.value for cell in self.cells]

    def values(self):
        """`{key in logs: value}` of the values written last."""
        return dict(zip(self._log_keys, [c.value for c in self._log_cells]))
