"""Magnitude pruning for Keras 3 on TensorFlow, JAX and PyTorch.

`prune(model, sparsity)` returns a copy of a built model whose kernels are
pruned during training: at each mask update the smallest-magnitude weights
(or units, blocks, or the smallest of every N in M) are zeroed to the
schedule's sparsity, and pruned weights stay exactly zero after every step.
`strip(model)` returns the plain Keras model, zeros in its weights. The
schedules and their `frequency` are TF Model Optimization's, so its users port
by changing the import:

```python
pruned = kr.pruning.prune(model, kr.pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000))
pruned.compile(...)
pruned.fit(..., callbacks=[kr.callbacks.RegularizationDriver()])
final = kr.pruning.strip(pruned)
```

`Prune` declares pruning on one layer's kernel when building a model
(`keras.layers.Dense(64, kernel_constraint=kr.pruning.Prune(0.8))`). The
`RegularizationDriver` callback (the one that drives schedules) installs the
mask updates when training starts; they run inside the compiled step (see
`keras_regx._pruning`).
"""

import numbers
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_regx._model_walk import own_variables
from keras_regx._pruning import PruningConstraint
from keras_regx._pruning import pruning_constraint
from keras_regx._pruning import stateless_update as _stateless_update
from keras_regx._surgery import check_model
from keras_regx._surgery import chosen_layers
from keras_regx._surgery import clone
from keras_regx._surgery import layer_tree
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import Schedulable
from keras_regx._validation import check_real
from keras_regx._validation import check_step
from keras_regx._validation import describe
from keras_regx._validation import is_schedule
from keras_regx.schedules import Schedule
from keras_regx.schedules import value_at as schedules_value_at

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "Prune",
    "PruningSchedule",
    "prune",
    "stateless_update",
    "strip",
]

_PACKAGE = "keras_regx"
_DEFAULT_FREQUENCY = 100
# "weight", "unit", "N:M", or a block shape (r, c).
Granularity = str | tuple[int, int]
# The config keys of the weights `prune` prunes, by layer type: kernels of
# Dense, EinsumDense, convolutions (transposed too), LSTM / GRU / SimpleRNN
# (and their recurrent kernels), depthwise and pointwise kernels, embeddings.
_PRUNED_KEYS = (
    "kernel_constraint",
    "recurrent_constraint",
    "depthwise_constraint",
    "pointwise_constraint",
    "embeddings_constraint",
)


def _check_sparsity(name, value):
    return check_real(name, value, minimum=0.0, maximum=1.0)


class PruningSchedule(Schedule):
    """Base class: a sparsity at each step, and the steps where masks update.

    `schedule(step)` is the target sparsity (a float32 tensor), and
    `should_update(step)` whether masks are recomputed at `step`: inside
    `[begin_step, end_step]` (`end_step=-1`: for ever), on steps where
    `(step - begin_step) % frequency == 0`, as in TF Model Optimization.
    `step` counts the optimizer updates applied, the current one included:
    masks update after the update that makes `step` (the 1st batch is step
    1), as TF Model Optimization's pruning step counts batches from 1, so
    with `begin_step=0` and `frequency=100` the first update is at the 100th
    batch.
    `value_at(step)` and `updates_at(step)` are the same on the host.

    Example:
    ```python
    >>> schedule = kr.pruning.ConstantSparsity(0.5, begin_step=10, end_step=30, frequency=10)
    >>> [step for step in range(40) if schedule.updates_at(step)]
    [10, 20, 30]
    >>> bool(keras.ops.convert_to_numpy(schedule.should_update(20)))
    True
    ```
    """

    def __init__(self, begin_step: int, end_step: int, frequency: int, allow_forever: bool):
        self.begin_step = check_step("begin_step", begin_step)
        if allow_forever and end_step == -1:
            self.end_step = -1
        else:
            self.end_step = check_step("end_step", end_step)
            if self.end_step < self.begin_step:
                raise ValueError(
                    "Invalid value for argument `end_step`: expected an integer >= "
                    f"begin_step={self.begin_step}"
                    + (" or -1 (for ever)" if allow_forever else "")
                    + f". Received: end_step={self.end_step}"
                )
        self.frequency = check_step("frequency", frequency, minimum=1)

    def should_update(self, step):
        """Whether masks are recomputed at `step` (a boolean tensor)."""
        return self._due(ops.convert_to_tensor(step), ops)

    def updates_at(self, step: int) -> bool:
        """Whether masks are recomputed at `step` (host)."""
        return bool(self._due(check_step("step", step), np))

    def _due(self, step, xp):
        """The update rule, written once for `keras.ops` and NumPy."""
        due = xp.logical_and(
            xp.greater_equal(step, self.begin_step),
            # >= 0 before the division, also for unsigned step counters
            xp.equal((step - xp.minimum(step, self.begin_step)) % self.frequency, 0))
        if self.end_step >= 0:
            due = xp.logical_and(due, xp.less_equal(step, self.end_step))
        return due


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(PruningSchedule):
    """Sparsity rising from `initial_sparsity` to `final_sparsity`, TF Model
    Optimization's `PolynomialDecay`.

    `sparsity = final + (initial - final) * (1 - p) ** power` with
    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`, in float32
    as TF Model Optimization computes it. Masks update at `begin_step` and
    every `frequency` steps after it, up to `end_step`.

    Args:
        initial_sparsity: float in [0, 1), the sparsity at `begin_step`.
        final_sparsity: float in [0, 1), the sparsity from `end_step` on.
        begin_step: int >= 0, the first step that updates masks.
        end_step: int > begin_step, the last step that may update masks.
        power: float > 0, the exponent of the decay.
        frequency: int >= 1, steps between mask updates.

    Example:
    ```python
    >>> schedule = kr.pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=10)
    >>> round(schedule.value_at(50), 4), schedule.updates_at(50), schedule.updates_at(55)
    (0.7, True, False)
    ```
    """

    def __init__(self, initial_sparsity: float, final_sparsity: float, begin_step: int,
                 end_step: int, power: float = 3, frequency: int = _DEFAULT_FREQUENCY):
        super().__init__(begin_step, end_step, frequency, allow_forever=False)
        if self.end_step == self.begin_step:
            raise ValueError(
                "Invalid value for argument `end_step`: expected an integer > "
                f"begin_step={self.begin_step}. Received: end_step={self.end_step}"
            )
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        self.power = check_real("power", power, minimum=0.0, strict=True)

    def _formula(self, step, xp):
        if xp is np:
            elapsed = np.float32(step - self.begin_step)
        else:
            elapsed = ops.cast(ops.convert_to_tensor(step) - self.begin_step, "float32")
        span = np.float32(self.end_step - self.begin_step)
        p = xp.minimum(np.float32(1.0), xp.maximum(np.float32(0.0), elapsed / span))
        delta = np.float32(self.initial_sparsity - self.final_sparsity)
        return delta * xp.power(np.float32(1.0) - p, np.float32(self.power)) + np.float32(
            self.final_sparsity)

    def __call__(self, step):
        return self._formula(step, ops)

    def value_at(self, step: int | float) -> float:
        return float(self._formula(check_step("step", step), np))

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSparsity(PruningSchedule):
    """One sparsity, TF Model Optimization's `ConstantSparsity`.

    Masks update to `target_sparsity` at `begin_step` and every `frequency`
    steps after it, up to `end_step` (-1: for ever).

    Args:
        target_sparsity: float in [0, 1).
        begin_step: int >= 0, the first step that updates masks.
        end_step: int >= begin_step, or -1 (for ever).
        frequency: int >= 1, steps between mask updates.

    Example:
    ```python
    >>> schedule = kr.pruning.ConstantSparsity(0.5, begin_step=0)
    >>> schedule.value_at(7), schedule.updates_at(0), schedule.updates_at(100), schedule.updates_at(7)
    (0.5, True, True, False)
    ```
    """

    def __init__(self, target_sparsity: float, begin_step: int, end_step: int = -1,
                 frequency: int = _DEFAULT_FREQUENCY):
        super().__init__(begin_step, end_step, frequency, allow_forever=True)
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)

    def __call__(self, step):
        return ops.convert_to_tensor(np.float32(self.target_sparsity))

    def value_at(self, step: int | float) -> float:
        check_step("step", step)
        return float(np.float32(self.target_sparsity))

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


class _EveryN(PruningSchedule):
    """Any other schedule's sparsity, masks updated every 100 steps from 0."""

    def __init__(self, schedule):
        super().__init__(0, -1, _DEFAULT_FREQUENCY, allow_forever=True)
        self.schedule = schedule

    def __call__(self, step):
        return ops.cast(self.schedule(step), "float32")

    def value_at(self, step: int | float) -> float:
        return schedules_value_at(self.schedule, step)


def _check_granularity(granularity):
    """`granularity` normalised: "weight", "unit", ("block", (r, c)) or ("n:m", (n, m))."""
    if isinstance(granularity, str):
        if granularity in ("weight", "unit"):
            return granularity
        parts = granularity.split(":")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            n, m = (int(p) for p in parts)
            if not 0 < n < m:
                raise ValueError(
                    "Invalid value for argument `granularity`: expected 'N:M' with "
                    f"0 < N < M (N zeros in every M weights). Received: "
                    f"granularity={granularity!r}"
                )
            return ("n:m", (n, m))
    elif isinstance(granularity, Sequence) and len(granularity) == 2 and all(
            isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in granularity):
        r, c = (int(b) for b in granularity)
        if r < 1 or c < 1:
            raise ValueError(
                "Invalid value for argument `granularity`: a block shape must be "
                f"two integers >= 1. Received: granularity={tuple(granularity)!r}"
            )
        return ("block", (r, c))
    error = ArgumentTypeError if not isinstance(granularity, (str, Sequence)) else ValueError
    raise error(
        "Invalid value for argument `granularity`: expected 'weight', 'unit', a "
        "block shape (r, c) or 'N:M' (e.g. '2:4'). Received: "
        f"granularity={describe(granularity)}"
    )


def _granularity_config(granularity):
    if isinstance(granularity, str):
        return granularity
    kind, (a, b) = granularity
    return f"{a}:{b}" if kind == "n:m" else [a, b]


def _check_scope(scope, granularity):
    if scope not in ("layer", "global"):
        raise ValueError(
            "Invalid value for argument `scope`: expected 'layer' or 'global'. "
            f"Received: scope={describe(scope)}"
        )
    if scope == "global" and granularity != "weight":
        raise ValueError(
            "Invalid value for argument `scope`: 'global' ranks single weights "
            "across kernels, so it needs granularity='weight'. Received: "
            f"scope='global' with granularity={_granularity_config(granularity)!r}"
        )
    return scope


def _pruning_schedule(sparsity, granularity):
    """`sparsity` as a pruning schedule (and checked against `granularity`)."""
    if isinstance(sparsity, dict):
        sparsity = keras.saving.deserialize_keras_object(sparsity)
    if isinstance(granularity, tuple) and granularity[0] == "n:m":
        n, m = granularity[1]
        if not is_schedule(sparsity) and (
                isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real)
                or abs(float(sparsity) - n / m) > 1e-9):
            raise ValueError(
                f"Invalid value for argument `sparsity`: with granularity "
                f"'{n}:{m}' the sparsity is {n}/{m}; give the float {n / m} or a "
                "schedule for when masks update. Received: "
                f"sparsity={describe(sparsity)}"
            )
    if isinstance(sparsity, PruningSchedule):
        return sparsity
    if is_schedule(sparsity):
        return _EveryN(sparsity)
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise ArgumentTypeError(
            "Invalid value for argument `sparsity`: expected a float in [0, 1) "
            "or a schedule (kr.pruning.PolynomialDecay, kr.pruning.ConstantSparsity, "
            f"or any keras_regx schedule). Received: sparsity={describe(sparsity)}"
        )
    return ConstantSparsity(_check_sparsity("sparsity", sparsity), begin_step=0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Prune(PruningConstraint):
    """Magnitude pruning of one weight, declared as its constraint.

    `keras.layers.Dense(64, kernel_constraint=kr.pruning.Prune(0.8))` prunes
    that kernel to 80% zeros while it trains with the
    `keras_regx.callbacks.RegularizationDriver` callback: at each mask update
    (the schedule's steps) the weights with the smallest magnitudes are
    zeroed, and pruned weights stay exactly zero after every step. The mask
    is saved with the model.

    Args:
        sparsity: float in [0, 1) (`ConstantSparsity(sparsity, begin_step=0)`:
            masks update every 100 steps, the first at the 100th), a `PolynomialDecay` or
            `ConstantSparsity`, or any keras_regx schedule (masks update every
            100 steps from step 0; values outside [0, 1] are clipped).
        granularity: `"weight"` (single weights); `"unit"` (whole output units
            or filters, ranked by L2 norm); a block shape `(r, c)` (blocks of
            the kernel viewed as (all but the last axis, last axis), ranked by
            mean magnitude); or `"N:M"` (e.g. `"2:4"`: the N smallest of every
            M consecutive weights along the input axis, axis -2; the sparsity
            is then N/M and `sparsity` only sets when masks update: TF Model
            Optimization's `sparsity_m_by_n` updates them once, at step 1,
            as `ConstantSparsity(N/M, begin_step=1, end_step=1)`).
        scope: `"layer"` (this kernel's own threshold) or `"global"` (one
            threshold over every kernel of the model pruned with
            `scope="global"` and the same schedule; `granularity="weight"`).
        constraint: None, or a constraint applied after the mask (the
            layer's own constraint, kept).
        name: optional name.

    Example:
    ```python
    >>> layer = keras.layers.Dense(4, kernel_constraint=kr.pruning.Prune(0.5))
    >>> type(layer.kernel_constraint).__name__
    'Prune'
    ```
    """

    def __init__(self, sparsity: Schedulable = 0.5, granularity: Granularity = "weight",
                 scope: str = "layer", constraint: keras.constraints.Constraint | None = None,
                 name: str | None = None):
        keras.layers.Layer.__init__(self, name=name, trainable=False)
        self.granularity = _check_granularity(granularity)
        self.scope = _check_scope(scope, self.granularity)
        self.sparsity = sparsity if not isinstance(sparsity, dict) else (
            keras.saving.deserialize_keras_object(sparsity))
        self.schedule = _pruning_schedule(self.sparsity, self.granularity)
        if isinstance(constraint, dict):
            constraint = keras.saving.deserialize_keras_object(constraint)
        if constraint is not None and not callable(constraint):
            raise ArgumentTypeError(
                "Invalid value for argument `constraint`: expected None or a "
                f"keras constraint. Received: constraint={describe(constraint)}"
            )
        self.constraint = constraint
        self._init_pruning()

    def check_weight(self, variable):
        """Raises a ValueError naming the weight when it cannot be pruned so."""
        shape = tuple(variable.shape)
        kind = self.granularity
        if kind == "weight":
            return
        where = f"weight '{variable.path}' of shape {shape}"
        if len(shape) < 2:
            raise ValueError(
                f"Invalid value for argument `granularity` of `Prune` on {where}: "
                f"{_granularity_config(kind)!r} needs a kernel of rank >= 2."
            )
        if kind == "unit":
            return
        if kind[0] == "block":
            rows, cols = (int(np.prod(shape[:-1])), shape[-1])
            r, c = kind[1]
            if r > rows or c > cols:
                raise ValueError(
                    f"Invalid value for argument `granularity` of `Prune` on {where}: "
                    f"the block ({r}, {c}) is larger than the kernel's 2-D view "
                    f"({rows}, {cols})."
                )
            return
        n, m = kind[1]
        if shape[-2] % m:
            raise ValueError(
                f"Invalid value for argument `granularity` of `Prune` on {where}: "
                f"'{n}:{m}' groups M={m} weights along the input axis (axis -2, "
                f"size {shape[-2]}), which M does not divide."
            )

    def get_config(self):
        return {
            "sparsity": keras.saving.serialize_keras_object(self.sparsity)
            if is_schedule(self.sparsity) else self.sparsity,
            "granularity": _granularity_config(self.granularity),
            "scope": self.scope,
            "constraint": keras.saving.serialize_keras_object(self.constraint)
            if self.constraint is not None else None,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _constraint_keys(layer):
    config = layer.get_config()
    return [key for key in _PRUNED_KEYS if key in config]


def _chosen(model, layers):
    """The layers to prune: by name, object or type; None: every layer with a
    kernel (a weight `prune` knows)."""
    if layers is None:
        return None
    if isinstance(layers, (str, type, keras.layers.Layer)) or not isinstance(layers, (list, tuple)):
        raise ArgumentTypeError(
            "Invalid value for argument `layers`: expected None or a list of "
            f"layer names, layers or layer types. Received: layers={describe(layers)}"
        )
    tree = layer_tree(model)[1:]
    named = []
    for item in layers:
        if isinstance(item, type):
            matches = [layer for layer in tree if isinstance(layer, item)
                       and _constraint_keys(layer)]
            if not matches:
                raise ValueError(
                    f"Invalid value for argument `layers`: the model has no "
                    f"{item.__name__} layer with a kernel to prune."
                )
            named.extend(matches)
        else:
            named.append(item)
    return chosen_layers(model, named, {"kernel": None}, {"kernel": _PRUNED_KEYS},
                         lacking="has no weight to prune (a kernel, recurrent kernel, depthwise "
                                 "or pointwise kernel, or embeddings)")


def prune(model: keras.Model, sparsity: Schedulable = 0.5, *, granularity: Granularity = "weight",
          scope: str = "layer", layers: Sequence | None = None) -> keras.Model:
    """A copy of a built model whose kernels are pruned during training.

    Every chosen layer's kernel (Dense, EinsumDense, convolutions and
    transposed convolutions, depthwise and separable convolutions, Embedding,
    LSTM / GRU / SimpleRNN kernels and recurrent kernels) gets its own
    `Prune` constraint (wrapping the layer's own constraint); the copy has
    the model's weights (nested models included). Compile it and train it
    with `keras_regx.callbacks.RegularizationDriver()`; `strip` gives the
    plain model afterwards.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.
        sparsity: float in [0, 1) or a schedule (see `Prune`).
        granularity: `"weight"`, `"unit"`, a block shape `(r, c)` or `"N:M"`
            (see `Prune`).
        scope: `"layer"` or `"global"` (one threshold across all pruned
            kernels, so layers end at different sparsities and the total
            meets the target).
        layers: None (every layer with a kernel), or a list of layer names,
            layers of `model` or layer types.

    Returns:
        A new, uncompiled model.

    Example:
    ```python
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="hidden"),
    ...                           keras.layers.Dense(1, name="out")])
    >>> pruned = kr.pruning.prune(model, 0.75, layers=["hidden"])
    >>> type(pruned.get_layer("hidden").kernel_constraint).__name__
    'Prune'
    >>> pruned.get_layer("out").kernel_constraint is None
    True
    ```
    """
    check_model(model, "prune")
    template = Prune(sparsity, granularity, scope)  # checks the arguments
    chosen = _chosen(model, layers)
    base = template.get_config()
    base.pop("name")

    def edit(layer, config):
        if chosen is not None and id(layer) not in chosen:
            return config
        for key in _PRUNED_KEYS:
            if key in config:
                if _is_prune(config[key]):
                    raise ValueError(
                        f"Layer '{layer.name}' is pruned already (its `{key}` is a "
                        "`Prune`); strip it first (`kr.pruning.strip`)."
                    )
                config[key] = keras.saving.serialize_keras_object(
                    Prune(**{**base, "constraint": config[key]}))
        return config

    return clone(model, edit)


def _is_prune(config):
    return isinstance(config, dict) and config.get("class_name") == "Prune" and str(
        config.get("registered_name", "")).startswith(_PACKAGE)


def stateless_update(model: keras.Model, trainable_values: list, non_trainable_values: list,
                     optimizer_values: list) -> tuple[list, list]:
    """The mask updates of a step, for training loops that thread the state.

    A training loop that passes the model's state through `jax.jit` itself
    (Keras' guide "Writing a training loop from scratch in JAX") updates the
    weights with `optimizer.stateless_apply`, which does not see the masks
    (they are model state, not the optimizer's). Call this right after it,
    inside the compiled step: on update steps it recomputes the masks, and
    it multiplies the pruned weights by them. `fit()`, and loops that call
    `optimizer.apply` (TensorFlow, PyTorch), need nothing. The model must be
    compiled with its optimizer, and the masks exist once a
    `keras_regx.callbacks.RegularizationDriver` among the loop's callbacks has
    run `on_train_begin()`: collect the state lists after it.

    Args:
        model: the pruned model.
        trainable_values: one value per `model.trainable_variables`, after
            the optimizer's update.
        non_trainable_values: one value per `model.non_trainable_variables`.
        optimizer_values: one value per `model.optimizer.variables`, after
            the update (its step counter counts this update).

    Returns:
        `(trainable_values, non_trainable_values)`: new lists, the pruned
        weights and the masks updated, every other entry as given.

    Example:
    ```python
    >>> model = kr.pruning.prune(keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)]),
    ...                          kr.pruning.ConstantSparsity(0.5, begin_step=0, frequency=1))
    >>> model.compile(keras.optimizers.SGD(0.1), "mse")
    >>> model.optimizer.build(model.trainable_variables)
    >>> callbacks = keras.callbacks.CallbackList([kr.callbacks.RegularizationDriver()], model=model)
    >>> callbacks.on_train_begin()  # creates the masks
    >>> trainable = [v.value for v in model.trainable_variables]
    >>> non_trainable = [v.value for v in model.non_trainable_variables]
    >>> optimizer_values = [v.value for v in model.optimizer.variables]
    >>> trainable, non_trainable = kr.pruning.stateless_update(
    ...     model, trainable, non_trainable, optimizer_values)
    >>> float(keras.ops.mean(keras.ops.equal(trainable[0], 0.0)))
    0.5
    ```
    """
    return _stateless_update(model, trainable_values, non_trainable_values, optimizer_values)


def strip(model: keras.Model) -> keras.Model:
    """A copy of a pruned model without its `Prune` constraints, pruned
    weights zero.

    Each `Prune` gives way to the constraint it wrapped (None for most); the
    copy's kernels are the model's times their masks. A model pruned with
    `prune` from a plain Keras model strips to a plain Keras model, which
    loads without importing keras_regx (other keras_regx objects, such as
    regularizers, stay: `kr.utils.remove_regularization` removes those).

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.

    Returns:
        A new, uncompiled model.

    Example:
    ```python
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
    >>> plain = kr.pruning.strip(kr.pruning.prune(model, 0.5))
    >>> plain.layers[0].kernel_constraint is None
    True
    ```
    """
    check_model(model, "strip")

    def edit(layer, config):
        for key in _PRUNED_KEYS:
            if _is_prune(config.get(key)):
                config[key] = config[key]["config"]["constraint"]
        return config

    copy = clone(model, edit)
    for source_layer, target_layer in zip(layer_tree(model), layer_tree(copy)):
        for source, target in zip(own_variables(source_layer), own_variables(target_layer)):
            constraint = pruning_constraint(source)
            if constraint is not None and constraint.mask is not None:
                mask = constraint.mask
                target.assign(ops.multiply(target.value, ops.cast(mask.value, target.dtype)))
    return copy
