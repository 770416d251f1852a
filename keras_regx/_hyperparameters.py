"""Hyperparameters that are a float or follow a schedule over training.

A scheduled hyperparameter lives in a float32 `keras.Variable` owned by a Keras
`Layer`, so the variable belongs to the model's state: on JAX the jitted train
step only sees the model's tracked variables, and a variable nobody tracks
would be frozen at its first value. The `RegularizationScheduler` callback
evaluates the schedules on the host and writes the variables between steps.
"""

import warnings

import keras
from keras import ops

from keras_regx import schedules as schedules_lib

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


class ScheduledHyperparameters:
    """Mixin for `keras.layers.Layer` subclasses with schedulable arguments."""

    def _init_scheduled(self):
        self._scheduled = {}  # argument name -> (schedule, variable)
        self._current = {}  # argument name -> last value written (host float)
        self._bounds = {}  # argument name -> (minimum, maximum) of its values
        self._scheduler_attached = False
        self._warned_unscheduled = False

    def _hyperparameter(self, name, value, minimum=0.0, maximum=None):
        """Validates `value`; returns the float, or the variable for a schedule.

        Values must lie in `[minimum, maximum)`; a schedule's values are checked
        on the host each time one is taken (at construction and by the
        scheduler), since a schedule's range is not known in advance.
        """
        value = schedules_lib.check_schedulable(name, value, minimum, maximum)
        if not schedules_lib.is_schedule(value):
            return value
        self._bounds[name] = (minimum, maximum)
        initial = self._scheduled_value(name, value, 0)
        # autocast=False: under a mixed precision policy the value stays
        # float32 inside `call` (a rate read as float16 would lose precision
        # and mismatch float32 noise).
        variable = self.add_weight(
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(initial),
            trainable=False,
            autocast=False,
            name=name,
        )
        self._scheduled[name] = (value, variable)
        self._current[name] = initial
        return variable

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
            schedules_lib.check_real(name, value, minimum=minimum, maximum=maximum)
        except ValueError as error:
            raise ValueError(
                f"The schedule of argument `{name}` of `{type(self).__name__}` "
                f"'{self.name}' left the valid range at step {step}: {error}"
            ) from None
        return value

    def _values_at(self, step, every=False):
        """Evaluates the schedules at `step`; yields (variable, value) that changed.

        With `every=True`, yields every value, changed or not: the variables
        may hold other values than the ones last written (restored from a
        backup, or a crashed JAX `fit()` whose last value never ran).
        """
        for arg, (schedule, variable) in self._scheduled.items():
            value = self._scheduled_value(arg, schedule, step)
            if every or value != self._current[arg]:
                self._current[arg] = value
                yield variable, value

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
        if not self._scheduled or self._scheduler_attached or self._warned_unscheduled:
            return
        if _in_training_step(x):
            self._warned_unscheduled = True
            warnings.warn(
                f"`{type(self).__name__}` '{self.name}' has scheduled "
                f"{', '.join(repr(a) for a in self._scheduled)} but no "
                "`keras_regx.callbacks.RegularizationScheduler` drives it, so "
                f"they stay at their last values {self._current}. Pass "
                "`callbacks=[keras_regx.callbacks.RegularizationScheduler()]` "
                "to `fit()`.",
                stacklevel=3,
            )


def revive_schedules(config):
    """`config` with its serialized objects (dicts) deserialized.

    Done before the constructor runs: Keras' `Operation.__new__` walks the
    constructor's arguments with its tree utilities, which on PyTorch recurse
    through a nested dict until Python's limit (a hostile file's schedule
    nested hundreds deep), where the schedules refuse such a config by name.
    """
    return {
        key: keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value
        for key, value in config.items()
    }


def _in_training_step(x):
    """Whether a regularizer called on `x` is called by a training step.

    `x=None` (a layer called with `training=True`) counts as one.
    """
    if in_symbolic_scope():
        return False
    if x is None:
        return True
    return (isinstance(x, keras.Variable) or in_stateless_scope()) and _taking_gradients(x)


def _taking_gradients(x):
    """Whether gradients are being taken through `x` (a weight or its value).

    Tells a training step (`fit()`, `train_on_batch()`, a custom loop) from
    `evaluate()`, which computes the same penalties without gradients.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        try:  # whether a GradientTape records; TensorFlow has no public query
            from tensorflow.python.eager.record import could_possibly_record
        except ImportError:  # pragma: no cover - a TensorFlow without it
            return True
        return could_possibly_record()
    if backend == "torch":
        import torch

        return torch.is_grad_enabled()
    if backend == "jax":
        import jax
        from jax.interpreters import ad

        value = x.value if isinstance(x, keras.Variable) else x
        # `jax.grad` traces with the tracers of JAX's autodiff interpreter
        # (JVP, linearize); `jax.jit` alone with staging tracers.
        return (isinstance(value, jax.core.Tracer)
                and type(value).__module__ == ad.JVPTracer.__module__)
    return False  # backends without training (NumPy, OpenVINO)
