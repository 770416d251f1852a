"""Proximal steps: the non-smooth part of a penalty applied after each update.

A regularizer built with `proximal=True` leaves its non-smooth part (the L1
term, the group norms) out of the gradient. Instead, right after the optimizer
updates a weight, the weight goes through the penalty's proximal map (the
soft-threshold for L1, the block soft-threshold for group lasso), which sets
small entries or groups to exactly zero. With plain SGD this is proximal
gradient descent (ISTA).

Keras' optimizers apply each variable's `constraint` right after the update,
inside the compiled train step and before the iteration counter moves. The
`RegularizationDriver` callback installs a `ProximalStep` as the
constraint of every weight with a proximal regularizer (keeping the layer's
own constraint, applied after it), so the step runs in the compiled step on
every backend.

The interface of a regularizer with a proximal step (`ProximalPenalty`):

- `proximal`: bool, whether the step is wanted;
- `proximal_map(w, step_size, step)`: the proximal map of the non-smooth
  part for a gradient step of `step_size` (a scalar or a tensor of `w`'s
  shape) at optimizer step `step`, written with `keras.ops`;
- `check_weight(variable)`: raises a ValueError when the regularizer cannot
  apply to `variable` (called before training starts);
- `needs_scalar_step`: class attribute, True when the map has no closed form
  for per-coordinate step sizes (adaptive optimizers).

`attach(model)` installs the steps; `is_attached(regularizer)` says whether a
step of that regularizer is installed.

The threshold is the penalty strength times the step the optimizer took on
that weight. For SGD that is the learning rate (over `1 - momentum`, the step
of momentum SGD once it settles, so the fixed points are the penalized
optimum's). Adam, RMSprop and Adagrad scale each coordinate by its own
factor, read from the optimizer's slots; thresholding every coordinate by the
learning rate would shrink all weights to zero. Other optimizers are refused.
"""

import weakref

import keras
from keras import ops

from keras_regx._model_walk import updating_optimizer


def _learning_rate(optimizer, dtype):
    return ops.cast(optimizer.learning_rate, dtype)


def _slot(optimizer, slots, variable):
    return slots[optimizer._get_variable_index(variable)]


def _sgd_step(optimizer, variable):
    lr = _learning_rate(optimizer, variable.dtype)
    momentum = float(optimizer.momentum)
    return lr / (1.0 - momentum) if momentum else lr


def _adam_step(optimizer, variable):
    dtype = variable.dtype
    lr = _learning_rate(optimizer, dtype)
    t = ops.cast(optimizer.iterations + 1, dtype)
    beta_1_power = ops.power(ops.cast(optimizer.beta_1, dtype), t)
    beta_2_power = ops.power(ops.cast(optimizer.beta_2, dtype), t)
    alpha = lr * ops.sqrt(1.0 - beta_2_power) / (1.0 - beta_1_power)
    slots = optimizer._velocity_hats if optimizer.amsgrad else optimizer._velocities
    velocity = _slot(optimizer, slots, variable)
    return alpha / (ops.sqrt(velocity) + optimizer.epsilon)


def _rmsprop_step(optimizer, variable):
    lr = _learning_rate(optimizer, variable.dtype)
    denominator = _slot(optimizer, optimizer._velocities, variable) + optimizer.epsilon
    if optimizer.centered:
        average = _slot(optimizer, optimizer._average_gradients, variable)
        denominator = denominator - ops.square(average)
    return lr / ops.sqrt(denominator) / (1.0 - float(optimizer.momentum))


def _adagrad_step(optimizer, variable):
    lr = _learning_rate(optimizer, variable.dtype)
    accumulator = _slot(optimizer, optimizer._accumulators, variable)
    return lr / ops.sqrt(accumulator + optimizer.epsilon)


# (optimizer class, step size function, whether the step is one scalar)
_RULES = (
    (keras.optimizers.SGD, _sgd_step, True),
    (keras.optimizers.Adam, _adam_step, False),  # AdamW too
    (keras.optimizers.RMSprop, _rmsprop_step, False),
    (keras.optimizers.Adagrad, _adagrad_step, False),
)
_SUPPORTED = "SGD (with or without momentum), Adam, AdamW, RMSprop and Adagrad"


def _rule(optimizer, regularizer, variable):
    """The step size function for `optimizer`, or a clear error."""
    described = (
        f"`{type(regularizer).__name__}(proximal=True)` on weight '{variable.path}'"
    )
    for cls, step, scalar in _RULES:
        if isinstance(optimizer, cls):
            if not scalar and regularizer.needs_scalar_step:
                raise ValueError(
                    f"{described} needs one step size for the whole weight, but "
                    f"{type(optimizer).__name__} scales each coordinate by its "
                    "own factor and the group soft-threshold has no closed form "
                    "for per-coordinate steps. Use `keras.optimizers.SGD` (with "
                    "or without momentum) or `proximal=False`. Received: "
                    f"optimizer={type(optimizer).__name__}"
                )
            return step
    raise ValueError(
        f"{described} needs the step size the optimizer takes on each "
        f"coordinate, which keras_regx knows for {_SUPPORTED}. Use one of "
        "those, or `proximal=False`. Received: "
        f"optimizer={type(optimizer).__name__}"
    )


class ProximalPenalty:
    """Mixin: the interface of a regularizer with a proximal step (see above)."""

    needs_scalar_step = False

    def proximal_map(self, w, step_size, step):
        """The proximal map of the non-smooth part, for a step of `step_size`."""
        raise NotImplementedError

    def check_weight(self, variable):
        """Raises a ValueError when the regularizer cannot apply to `variable`."""


# The regularizers whose steps `attach` installed.
_ATTACHED = weakref.WeakSet()


def is_attached(regularizer):
    """Whether `attach` installed a proximal step of `regularizer`."""
    return regularizer in _ATTACHED


class ProximalStep:
    """Variable constraint: the regularizer's proximal map, then the old one."""

    def __init__(self, regularizer, optimizer, variable, step_size, constraint):
        self.regularizer = regularizer
        self.optimizer = optimizer
        self.variable = variable
        self.step_size = step_size
        self.constraint = constraint

    def __call__(self, w):
        optimizer = self.optimizer
        # Updates applied before this one (with gradient accumulation, Keras
        # counts updates here and batches in `_iterations`).
        step = optimizer.iterations
        size = self.step_size(optimizer, self.variable)
        accumulate = optimizer.gradient_accumulation_steps
        if accumulate:
            # Only every `accumulate`-th batch updates the weights.
            is_update = ops.equal((optimizer._iterations + 1) % accumulate, 0)
            size = size * ops.cast(is_update, self.variable.dtype)
        w = self.regularizer.proximal_map(w, size, step)
        if self.constraint is not None:
            w = self.constraint(w)
        return w


def attach(model):
    """Installs the proximal steps of `model`'s weights; True if any changed.

    Raises a ValueError when the model's optimizer has no known step size
    for a proximal regularizer, or when a regularizer does not fit its weight.
    """
    proximal = [
        (variable, variable.regularizer) for variable in model.trainable_variables
        if getattr(getattr(variable, "regularizer", None), "proximal", False)
    ]
    if not proximal:
        return False
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"`{type(proximal[0][1]).__name__}(proximal=True)` on weight "
            f"'{proximal[0][0].path}' needs the optimizer that updates the "
            "weights, for its step size, but the model has none. In a custom "
            "training loop, `model.compile(optimizer=...)` with the optimizer "
            "the loop applies: its `apply()` then runs the proximal steps."
        )
    optimizer = updating_optimizer(model.optimizer)
    changed = False
    for variable, regularizer in proximal:
        current = variable.constraint
        if isinstance(current, ProximalStep):
            if current.optimizer is optimizer and current.regularizer is regularizer:
                _ATTACHED.add(regularizer)
                continue
            current = current.constraint
        regularizer.check_weight(variable)
        step_size = _rule(optimizer, regularizer, variable)
        variable.constraint = ProximalStep(
            regularizer, optimizer, variable, step_size, current
        )
        _ATTACHED.add(regularizer)
        changed = True
    return changed
