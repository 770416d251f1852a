"""The schedule engine: moves every scheduled value of a model to a step.

`RegularizationScheduler` calls it before each training step. Its cost must
not grow with the number of scheduled objects, so:

- each distinct schedule is evaluated once per step on the host, however many
  objects use it: schedules are grouped by their config (equal configs give
  equal values; keras_regx's and Keras' own schedules, whose configs say all
  they compute) or, for other schedule classes, by identity;
- each scheduled variable is written once (objects built on one schedule
  object share a variable, see `keras_regx._hyperparameters`, and
  `share_equal_schedules` joins a model's equal schedules when `fit()`
  starts), and only when its value changes;
- the writes of one step go to the backend together (`assigner`,
  `JaxStateWriter`): TensorFlow assign ops for a few, one compiled function
  for many, JAX the state of the running `fit()`, PyTorch in-place fills.

This module holds the backend-specific code of the scheduler.
"""

import json

import keras
import numpy as np

_BUILTIN_MODULES = ("keras_regx.", "keras.")
_WRITER = "_keras_regx_writer"  # marks the functions a writer put on a model


def _schedule_key(schedule):
    """Schedules with equal keys have equal values at every step."""
    cls = type(schedule)
    if cls.__module__.startswith(_BUILTIN_MODULES):
        try:
            config = json.dumps(schedule.get_config(), sort_keys=True)
            return cls.__module__, cls.__qualname__, config
        except (TypeError, ValueError, RecursionError):  # pragma: no cover - defensive
            pass
    return id(schedule)


def share_equal_schedules(objects):
    """Gives the arguments of `objects` that follow equal schedules one variable.

    Equal schedules (equal keys) have equal values at every step, so the
    arguments that follow them can share one variable, which the scheduler
    then writes once and the compiled step reads once (every variable costs
    step time: on JAX it is passed in and out of the jitted step). An object
    keeps one variable per argument (its file holds one value each): the
    k-th of its arguments on a schedule shares the k-th variable of that
    schedule. Only `objects` (one model's) are joined, never objects of
    models trained apart, which may be at other steps.

    Returns whether an argument changed variable (steps traced before read
    the old ones).
    """
    shared, keys, changed = {}, {}, False
    for obj in objects:
        taken = {}  # key -> how many of this object's arguments follow it
        for arg, (schedule, variable) in list(obj._scheduled.items()):
            if id(schedule) not in keys:
                keys[id(schedule)] = _schedule_key(schedule)
            key = keys[id(schedule)], obj._bounds[arg]
            k = taken[key] = taken.get(key, -1) + 1
            slots = shared.setdefault(key, [])
            if k == len(slots):
                slots.append((variable, obj._cells[arg]))
            elif slots[k][0] is not variable:
                obj._follow(arg, *slots[k])
                changed = True
    return changed


class _Group:
    """One distinct schedule (and range), the variables that follow it."""

    __slots__ = ("owner", "arg", "schedule", "variables", "cells", "value")

    def __init__(self, owner, arg, schedule):
        self.owner, self.arg, self.schedule = owner, arg, schedule
        self.variables, self.cells = [], []
        self.value = None


class ScheduleEngine:
    """Evaluates and writes the scheduled values of `objects`.

    Args:
        objects: the objects with scheduled hyperparameters (each once).
        keys: `{(id(object), argument): key in logs}`.
    """

    def __init__(self, objects, keys):
        groups, seen, schedule_keys = {}, set(), {}
        log_cells = {}  # key in logs -> cell (equal keys hold equal values)
        for obj in objects:
            for arg, (schedule, variable) in obj._scheduled.items():
                cell = obj._cells[arg]
                log_cells.setdefault(keys[(id(obj), arg)], cell)
                if id(schedule) not in schedule_keys:
                    schedule_keys[id(schedule)] = _schedule_key(schedule)
                key = schedule_keys[id(schedule)], obj._bounds[arg]
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group(obj, arg, schedule)
                if id(variable) not in seen:
                    seen.add(id(variable))
                    group.variables.append(variable)
                    group.cells.append(cell)
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
            value = group.owner._scheduled_value(group.arg, group.schedule, step)
            if every or value != group.value:
                group.value = value
                for variable, cell in zip(group.variables, group.cells):
                    cell.value = value
                    pairs.append((variable, value))
        if pairs:
            write(pairs)
        return bool(pairs)

    def values(self):
        """`{key in logs: value}` of the values written last."""
        return dict(zip(self._log_keys, [c.value for c in self._log_cells]))


def assigner(engine):
    """`write(pairs)` for `engine` on the current backend, outside a JAX `fit()`."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _TensorFlowWriter(engine)
    if backend == "torch":
        return _torch_write
    return _assign_each


def _assign_each(pairs):
    for variable, value in pairs:
        variable.assign(value)


def _torch_write(pairs):
    """PyTorch: fills the variables' tensors in place.

    `Variable.assign` checks and converts its argument (tens of
    microseconds); a scheduled variable is a float32 scalar that only the
    scheduler writes, so an in-place fill of its tensor is the same write.
    """
    import torch

    with torch.no_grad():
        for variable, value in pairs:
            variable.value.fill_(value)


class _TensorFlowWriter:
    """TensorFlow: the writes of a step, by op or in one compiled call.

    On this machine's CPU Keras' eager `Variable.assign` costs about 70 us a
    variable, TensorFlow's assign op alone about 10 us, and a call of a
    `tf.function` about 250 us whatever it does. So a step that changes a
    few variables assigns each with the op (plain float32 resource
    variables; others, such as a `tf.distribute` strategy's, whose replicas
    must all change, through `Variable.assign`); one that changes more calls
    one compiled function that assigns every variable of the engine its
    current value.
    """

    _FEW = 16

    def __init__(self, engine):
        import tensorflow as tf
        from tensorflow.python.ops.resource_variable_ops import ResourceVariable

        self._engine = engine
        self._function = None
        self._assign_op = tf.raw_ops.AssignVariableOp
        self._plain = {
            id(v) for v in engine.variables
            if type(v.value) is ResourceVariable and v.value.dtype == tf.float32
        }

    def __call__(self, pairs):
        if len(pairs) <= self._FEW:
            for variable, value in pairs:
                if id(variable) in self._plain:
                    self._assign_op(resource=variable.value.handle, value=value)
                else:
                    variable.assign(value)
            return
        engine = self._engine
        if self._function is None:
            import tensorflow as tf

            variables = engine.variables

            @tf.function(autograph=False)
            def assign(values):
                for i, variable in enumerate(variables):
                    variable.assign(values[i])

            self._function = assign
        self._function(np.array([cell.value for cell in engine.cells], np.float32))


class JaxStateWriter:
    """Writes new variable values into the state of JAX's running `fit()`.

    JAX's `fit()` holds the model state as arrays between steps and re-reads
    the variables only at epoch starts or after a full state sync (about 1 ms
    per sync for a 24-layer MLP). Instead, this wraps `model.train_function`
    and swaps the new values into the non-trainable part of the state that
    the next step receives.

    A `fit()` may end without `on_train_end` (an exception, a
    KeyboardInterrupt), so nothing may depend on `close()`:

    - `model.jax_state_sync` is wrapped too: every sync, the one that ends any
      `fit()` included, also writes the values still pending into the
      variables, so they hold what TensorFlow's and PyTorch's would;
    - a wrapper that finds itself in another `fit()` (`model.history` is that
      fit's `History`) removes itself and passes the call through;
    - the scheduler's `on_train_begin` closes any writer left on the model.
    """

    def __init__(self, model, variables):
        index = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        missing = [v.path for v in variables if id(v) not in index]
        if missing:
            raise ValueError(
                "Scheduled variables "
                f"{missing} are not part of the model's state, so on the JAX "
                "backend the compiled train step would never see them change. "
                "This happens when a keras_regx regularizer is passed to "
                "`add_weight(regularizer=...)` without being stored on the "
                "layer: assign it to an attribute of the layer "
                "(e.g. `self.kernel_regularizer = reg`) before building it."
            )
        self._model = model
        self._fit = getattr(model, "history", None)  # a new `History` each fit()
        self._index = index
        self._variables = {index[id(v)]: v for v in variables}
        self._pending = {}
        self._original = model.train_function
        self._original_sync = model.jax_state_sync
        # Usually the class's method; anything on the instance goes back there.
        self._own_sync = vars(model).get("jax_state_sync")

        def train_function(state, data):
            if getattr(model, "history", None) is not self._fit:  # a fit() that crashed
                self.close()
                return self._original(state, data)
            pending = self._pending
            if pending:
                trainable, non_trainable, optimizer, metrics = state
                non_trainable = list(non_trainable)
                for i, value in pending.items():
                    non_trainable[i] = value
                state = (trainable, non_trainable, optimizer, metrics)
            logs_and_state = self._original(state, data)
            if pending:  # the step ran: its values are in the state now
                self._pending = {}
            return logs_and_state

        def jax_state_sync():
            self._original_sync()
            if getattr(model, "history", None) is not self._fit:
                self.close()
            self._flush()

        train_function.__dict__[_WRITER] = self
        jax_state_sync.__dict__[_WRITER] = self
        self._train_function = train_function
        self._sync = jax_state_sync
        model.train_function = train_function
        model.jax_state_sync = jax_state_sync

    def __call__(self, pairs):
        # NumPy scalars, not device arrays: jit transfers them with the
        # step's other arguments (about 1.5 us each), where making a device
        # array here costs about 20 us a value on the CPU; and a device
        # array shared by several entries of the state would be donated
        # twice. The variables themselves get the values when Keras next
        # syncs the state into the variables (epoch end, or a callback
        # reading the model), like every other variable of the model during
        # a JAX `fit()`.
        for variable, value in pairs:
            self._pending[self._index[id(variable)]] = np.asarray(value, np.float32)

    def _flush(self):
        """Writes the pending values into the variables (after a state sync)."""
        pending, self._pending = self._pending, {}
        for i, value in pending.items():
            self._variables[i].assign(value)

    def close(self):
        """Takes the wrappers off the model, where they are still on top."""
        model = vars(self._model)
        if model.get("train_function") is self._train_function:
            self._model.train_function = self._original
        if model.get("jax_state_sync") is self._sync:
            if self._own_sync is None:
                del self._model.jax_state_sync  # the class's method again
            else:
                self._model.jax_state_sync = self._own_sync

    @staticmethod
    def close_all(model):
        """Closes the writers that fits which never ended left on `model`."""
        for name in ("jax_state_sync", "train_function"):
            writer = getattr(vars(model).get(name), _WRITER, None)
            while writer is not None:
                writer._flush()
                writer.close()
                writer = getattr(vars(model).get(name), _WRITER, None)
