"""Decoupled weight decay on a schedule, for any Keras 3 optimizer.

Every Keras optimizer takes `weight_decay` as a float only: given a schedule,
it is accepted and then fails inside `fit()`. `ScheduledWeightDecay` wraps an
optimizer, in the manner of Keras' `LossScaleOptimizer`, and applies Keras'
own decoupled rule with a value that follows a schedule:
`w -= learning_rate_t * weight_decay_t * w` before each gradient update, with
`weight_decay_t = schedule(iterations)` computed inside the compiled update
from the optimizer's own step count. No callback is needed: the optimizer's
variables take part in the update on every backend.
"""

import math

import keras
from keras import ops

from keras_regx._backend import apply_weight_decay
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import Schedulable
from keras_regx._validation import check_schedulable
from keras_regx._validation import describe
from keras_regx._validation import is_schedule
from keras_regx.schedules import Constant
from keras_regx.schedules import value_at

__all__ = ["ScheduledWeightDecay"]

_PACKAGE = "keras_regx"


def _check_optimizer(optimizer):
    if isinstance(optimizer, dict):
        optimizer = keras.optimizers.deserialize(optimizer)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ArgumentTypeError(
            "Invalid value for argument `optimizer`: expected a Keras 3 "
            "optimizer (a `keras.optimizers.Optimizer` such as SGD, Adam, "
            f"AdamW, Lion). Received: optimizer={describe(optimizer)}"
        )
    if isinstance(optimizer, (keras.optimizers.LossScaleOptimizer, ScheduledWeightDecay)):
        raise ValueError(
            "Invalid value for argument `optimizer`: expected the optimizer "
            "that updates the weights; wrap it in `ScheduledWeightDecay` first "
            "and put the result in a `LossScaleOptimizer`, if any "
            "(`LossScaleOptimizer(ScheduledWeightDecay(opt, wd))`). Received: "
            f"optimizer={type(optimizer).__name__}"
        )
    if optimizer.built:
        raise ValueError(
            "Invalid value for argument `optimizer`: expected an optimizer not "
            "built yet (its variables would be created twice). Received: "
            f"optimizer={type(optimizer).__name__} '{optimizer.name}', already "
            "built"
        )
    return optimizer


def _check_weight_decay(weight_decay):
    """A float >= 0 and finite, or a schedule whose first value is one."""
    weight_decay = check_schedulable("weight_decay", weight_decay, minimum=0.0)
    if is_schedule(weight_decay):
        _checked_value(weight_decay, 0)
    return weight_decay


def _checked_value(schedule, step):
    """The schedule's value at `step` on the host; raises if not >= 0 and finite."""
    value = value_at(schedule, step)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(
            "Invalid value for argument `weight_decay`: expected values >= 0 "
            f"and finite. The schedule {type(schedule).__name__} gave {value!r} "
            f"at step {step}."
        )
    return value


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScheduledWeightDecay(keras.optimizers.Optimizer):
    """Decoupled weight decay whose strength follows a schedule, for any optimizer.

    Wraps a Keras 3 optimizer (SGD, Adam, AdamW, Lion, RMSprop, ...) and
    replaces its weight decay with `weight_decay`, a float or a schedule. At
    every update, before the gradient step and inside the compiled update,
    each weight `w` that the optimizer decays (see
    `exclude_from_weight_decay`) becomes `w - lr_t * wd_t * w`, Keras' own
    rule, where `lr_t` is the optimizer's learning rate and `wd_t` is
    `weight_decay(iterations)` (`iterations`: the updates applied so far; 0 at
    the first). With a float the weights equal those of Keras' own float
    weight decay exactly.

    Everything else is the wrapped optimizer's: its learning rate (schedules
    included), its `iterations`, gradient clipping and accumulation, EMA. It
    saves and loads with the model (`.keras` files, `safe_mode=True`),
    mid-schedule. With mixed precision, put it inside the loss scaling:
    `LossScaleOptimizer(ScheduledWeightDecay(opt, wd))`. With
    `RegularizationDriver` in `fit()`, the current value is logged as
    `"weight_decay"`, and a schedule that leaves the valid range (< 0 or not
    finite) raises naming the step.

    Args:
        optimizer: a Keras 3 optimizer, not built yet. Its own `weight_decay`
            is not used.
        weight_decay: float >= 0, a keras_regx schedule or a Keras
            `LearningRateSchedule`.
        name: optional name.

    Example:
    ```python
    >>> opt = kr.optimizers.ScheduledWeightDecay(
    ...     keras.optimizers.SGD(0.5), kr.schedules.Linear(0.0, 0.2, end_step=2))
    >>> w = keras.Variable(np.ones(2, "float32"))
    >>> for _ in range(3):  # zero gradients: only the decay moves the weight
    ...     opt.apply([keras.ops.zeros(2)], [w])
    >>> [round(float(v), 4) for v in w.numpy()]  # 1 * (1 - 0.5 * 0) (1 - 0.5 * 0.1) (1 - 0.5 * 0.2)
    [0.855, 0.855]
    ```
    """

    def __init__(self, optimizer: keras.optimizers.Optimizer, weight_decay: Schedulable,
                 name: str | None = None, **kwargs):
        if kwargs:
            raise ValueError(
                "ScheduledWeightDecay does not take arguments "
                f"{sorted(kwargs)}: set them on the wrapped optimizer."
            )
        optimizer = _check_optimizer(optimizer)
        weight_decay = _check_weight_decay(weight_decay)
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = optimizer
        self.scheduled_weight_decay = weight_decay
        # Keras' optimizers call `self._apply_weight_decay(variables)` inside
        # their update, before the gradient step: this instance's version
        # applies the scheduled value there.
        optimizer._apply_weight_decay = self._decay

    def _value(self, dtype):
        """The weight decay of the current update (a tensor or a float)."""
        weight_decay = self.scheduled_weight_decay
        if not is_schedule(weight_decay):
            return weight_decay
        if isinstance(weight_decay, Constant):
            # A float, as Keras' own: TensorFlow then folds it into the
            # update as it folds Keras' float (equal weights, bit for bit).
            return weight_decay.value
        step = self.inner_optimizer.iterations
        return ops.cast(weight_decay(step), dtype)

    def _decay(self, variables):
        # Keras' own rule, with the scheduled value in place of the float it
        # reads from `weight_decay`.
        apply_weight_decay(self.inner_optimizer, variables, self._value)

    def build(self, var_list):
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        self.inner_optimizer.apply(grads, trainable_variables=trainable_variables)

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Excludes variables from the decay (see the wrapped optimizer's)."""
        self.inner_optimizer.exclude_from_weight_decay(var_list, var_names)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def current_weight_decay_at(self, step):
        """The weight decay of update `step` (from 0), as a host float.

        Raises a ValueError naming the step where a schedule's value is
        negative or not finite.
        """
        weight_decay = self.scheduled_weight_decay
        if not is_schedule(weight_decay):
            return weight_decay
        return _checked_value(weight_decay, step)

    def get_config(self):
        weight_decay = self.scheduled_weight_decay
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "weight_decay": keras.saving.serialize_keras_object(weight_decay)
            if is_schedule(weight_decay) else weight_decay,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        optimizer = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects)
        return cls(optimizer, **config)
