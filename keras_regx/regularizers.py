"""L1, L2 and ElasticNet weight regularizers whose strength may follow a schedule.

At a constant strength each one computes exactly what Keras' own
`keras.regularizers.L1` / `L2` / `L1L2` compute, with the same operations. A
strength may instead be a schedule (`keras_regx.schedules.*` or any
`keras.optimizers.schedules.LearningRateSchedule`); the
`keras_regx.callbacks.RegularizationDriver` callback then moves it along its
schedule during `fit()`.

The regularizers are also Keras layers (never called as layers): a Keras layer
tracks a layer assigned to one of its attributes, so the strength variable of a
regularizer passed as `kernel_regularizer=` joins the model's state. That is
what keeps a schedule live inside the compiled JAX train step, and what saves
the current strength with the model.

With `proximal=True` (L1, ElasticNet, GroupLasso) the non-smooth part of the
penalty leaves the gradient and is applied instead as a proximal step after
each optimizer update (soft-threshold, or block soft-threshold for groups),
which makes weights exactly zero. The penalty's value still counts in the
loss that `fit()` reports. The `RegularizationDriver` callback installs
the proximal steps when training starts; see `keras_regx._proximal` for the
optimizers it supports.
"""

import numbers
import warnings

import keras
from keras import ops

from keras_regx._backend import read_once
from keras_regx._hyperparameters import ScheduledHyperparameters
from keras_regx._hyperparameters import get_shared_object
from keras_regx._hyperparameters import in_training_step
from keras_regx._hyperparameters import record_object_after_deserialization
from keras_regx._hyperparameters import revive_schedules
from keras_regx._hyperparameters import sharing_key
from keras_regx._model_walk import Attachment
from keras_regx._penalties import elastic_net
from keras_regx._penalties import soft_threshold
from keras_regx._proximal import ProximalPenalty
from keras_regx._proximal import is_attached
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import Schedulable
from keras_regx._validation import check_bool
from keras_regx._validation import describe

__all__ = [
    "ElasticNet",
    "GroupLasso",
    "L1",
    "L2",
    "ScheduledRegularizer",
]

_PACKAGE = "keras_regx"


class ScheduledRegularizer(
    ScheduledHyperparameters, ProximalPenalty, Attachment, keras.regularizers.Regularizer,
    keras.layers.Layer
):
    """Base class: a regularizer whose strengths may follow schedules.

    Subclasses with `proximal=True` implement the proximal-step interface of
    `keras_regx._proximal.ProximalPenalty` (`proximal_map`, `check_weight`).
    """

    def __init__(self, name: str | None = None, proximal: bool = False):
        keras.layers.Layer.__init__(self, name=name, dtype="float32", trainable=False)
        self._init_scheduled()
        self.proximal = check_bool("proximal", proximal)
        self._warned_proximal = False

    def _finish_init(self):
        self.built = True

    def __call__(self, x):
        self._warn_if_unscheduled(x)
        if self.proximal and not is_attached(self):
            self._warn_if_not_proximal(x)
        return self.call(x)

    def _warn_if_not_proximal(self, x):
        if self._warned_proximal or not in_training_step(x):
            return
        self._warned_proximal = True
        warnings.warn(
            f"`{type(self).__name__}` '{self.name}' has proximal=True but no "
            "`keras_regx.callbacks.RegularizationDriver` (formerly "
            "`RegularizationScheduler`) installed its "
            "proximal step, so the non-smooth part of its penalty is not "
            "applied. Pass `callbacks=[keras_regx.callbacks."
            "RegularizationDriver()]` to `fit()`.",
            stacklevel=3,
        )

    def call(self, x):
        raise NotImplementedError

    def compute_output_spec(self, x):
        return keras.KerasTensor((), dtype=x.dtype)

    @classmethod
    def from_config(cls, config):
        """The regularizer of `config`; one object per config while a file loads.

        Keras saves a regularizer that several layers share once, under the
        first layer that holds it, but marks the sharing in the file only on
        the later layers' configs, so a plain load would build one object per
        layer and find no saved strength for all but the first. Two
        regularizers of one model with equal configs (same class, schedule
        and name) always hold equal values, so while Keras loads a file
        (inside its object-sharing scope) equal configs give one object, as
        they were when saved. Outside loading (`clone_model`, `from_config`)
        every call builds a new object.
        """
        key = sharing_key(cls, config)
        if key is None:  # a config too deep to key: the schedules say why
            return cls(**revive_schedules(config))
        shared = get_shared_object(key)
        if shared is not None:
            return shared
        regularizer = cls(**revive_schedules(config))
        record_object_after_deserialization(regularizer, key)
        return regularizer


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L1(ScheduledRegularizer):
    """L1 weight penalty with a constant or scheduled strength.

    `loss = l1 * sum(abs(x))`, identical to `keras.regularizers.L1` at a
    constant `l1`.

    Args:
        l1: float >= 0 (None: 0.01, as in Keras), or a schedule (a `keras_regx.schedules` object or a
            `keras.optimizers.schedules.LearningRateSchedule`) giving the
            strength at each optimizer step.
        proximal: bool. If True, the penalty is applied as a soft-threshold
            of the weights by `l1` times the optimizer's step after each
            update (proximal gradient descent) instead of through the
            gradient, so weights reach exactly 0. Needs the
            `keras_regx.callbacks.RegularizationDriver` callback in
            `fit()` and one of the optimizers SGD, Adam, AdamW, RMSprop or
            Adagrad (Adam, RMSprop and Adagrad threshold each coordinate by
            its own step). A scheduled `l1` then follows its schedule at every
            step. The reported loss still includes `l1 * sum(abs(x))`.
        name: optional name, used for the strength's key in `fit()` logs
            (`"<name>/l1"`).

    Example:
    ```python
    >>> reg = kr.regularizers.L1(kr.schedules.Linear(0.0, 1e-3, end_step=1000))
    >>> layer = keras.layers.Dense(4, kernel_regularizer=reg)
    >>> float(kr.regularizers.L1(0.5)(np.array([[-1.0, 2.0]], "float32")))
    1.5
    ```
    """

    def __init__(self, l1: Schedulable | None = 0.01, proximal: bool = False,
                 name: str | None = None):
        super().__init__(name=name, proximal=proximal)
        self.l1 = self._hyperparameter("l1", 0.01 if l1 is None else l1)  # None: as Keras
        self._finish_init()

    def call(self, x):
        return elastic_net(x, read_once(self.l1), None, gradient=not self.proximal)

    def proximal_map(self, w, step_size, step):
        return _l1_proximal_map(self, w, step_size, step)

    def get_config(self):
        return {
            "l1": self._hyperparameter_config("l1", self.l1),
            "proximal": self.proximal,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L2(ScheduledRegularizer):
    """L2 weight penalty with a constant or scheduled strength.

    `loss = l2 * sum(square(x))`, identical to `keras.regularizers.L2` at a
    constant `l2`.

    Args:
        l2: float >= 0 (None: 0.01, as in Keras), or a schedule giving the
            strength at each step.
        name: optional name, used for the strength's key in `fit()` logs.

    Example:
    ```python
    >>> float(kr.regularizers.L2(0.5)(np.array([[-1.0, 2.0]], "float32")))
    2.5
    ```
    """

    def __init__(self, l2: Schedulable | None = 0.01, name: str | None = None):
        super().__init__(name=name)
        self.l2 = self._hyperparameter("l2", 0.01 if l2 is None else l2)  # None: as Keras
        self._finish_init()

    def call(self, x):
        return elastic_net(x, None, read_once(self.l2))

    def get_config(self):
        return {"l2": self._hyperparameter_config("l2", self.l2), "name": self.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ElasticNet(ScheduledRegularizer):
    """L1 plus L2 weight penalty, each strength constant or scheduled.

    `loss = l1 * sum(abs(x)) + l2 * sum(square(x))`, identical to
    `keras.regularizers.L1L2` at constant strengths (a term whose constant
    strength is 0 is skipped, as Keras does).

    Args:
        l1: float >= 0 or a schedule (None: 0, as in Keras' `L1L2`).
        l2: float >= 0 or a schedule (None: 0, as in Keras' `L1L2`).
        proximal: bool. If True, the L1 term is applied as a soft-threshold
            after each optimizer update, as in `L1(proximal=True)`, and the L2
            term stays in the gradient.
        name: optional name, used for the strengths' keys in `fit()` logs
            (`"<name>/l1"`, `"<name>/l2"`).

    Example:
    ```python
    >>> float(kr.regularizers.ElasticNet(l1=0.5, l2=0.5)(np.array([[-1.0, 2.0]], "float32")))
    4.0
    ```
    """

    def __init__(self, l1: Schedulable | None = 0.01, l2: Schedulable | None = 0.01,
                 proximal: bool = False, name: str | None = None):
        super().__init__(name=name, proximal=proximal)
        # None is 0, as in Keras' L1L2.
        self.l1 = self._hyperparameter("l1", 0.0 if l1 is None else l1)
        self.l2 = self._hyperparameter("l2", 0.0 if l2 is None else l2)
        self._finish_init()

    def call(self, x):
        # A term whose constant strength is 0 is skipped, as Keras does.
        l1 = read_once(self.l1) if "l1" in self._scheduled or self.l1 != 0.0 else None
        l2 = read_once(self.l2) if "l2" in self._scheduled or self.l2 != 0.0 else None
        if not self.proximal or l1 is None:
            return elastic_net(x, l1, l2)
        l1_term = elastic_net(x, l1, None, gradient=False)
        return l1_term if l2 is None else elastic_net(x, None, l2) + l1_term

    def proximal_map(self, w, step_size, step):
        return _l1_proximal_map(self, w, step_size, step)  # the L1 term's

    def get_config(self):
        return {
            "l1": self._hyperparameter_config("l1", self.l1),
            "l2": self._hyperparameter_config("l2", self.l2),
            "proximal": self.proximal,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupLasso(ScheduledRegularizer):
    """Group lasso: a penalty on the L2 norms of whole rows, units or filters.

    `loss = factor * sum_i norm(x[..., i, ...])`, one group per index `i`
    along `axis` (Yuan & Lin 2006; structured sparsity, Wen et al. 2016).
    The convention is the Keras kernel layout, as in `keras_regx.sparsity`:

    - `axis=-1` (default): the output units of a `Dense` kernel
      `(inputs, units)`, or the filters of a convolution kernel
      `(..., in_channels, filters)`;
    - `axis=0` of a `Dense` kernel: the input features (rows), so a zero
      group is an input the layer ignores;
    - `axis=-2` of a convolution kernel: the input channels.

    All groups of one weight have the same size, so the `sqrt(group size)`
    factor of Yuan & Lin is left to `factor`. The gradient of a group norm at
    an all-zero group is taken as 0.

    Args:
        factor: float >= 0, or a schedule giving the strength at each step.
        axis: int, the weight axis that indexes the groups.
        proximal: bool. If True, the penalty is applied after each update as
            a block soft-threshold, `g * max(0, 1 - t / norm(g))` with
            `t = factor * learning_rate / (1 - momentum)`, which zeroes whole
            groups exactly. Needs the `RegularizationDriver` callback and
            `keras.optimizers.SGD` (the group threshold has no closed form for
            the per-coordinate steps of adaptive optimizers).
        name: optional name, used for the strength's key in `fit()` logs
            (`"<name>/factor"`).

    Example:
    ```python
    >>> kernel = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], "float32")
    >>> float(kr.regularizers.GroupLasso(0.5, axis=0)(kernel))  # rows: 5, 0, 1
    3.0
    >>> layer = keras.layers.Dense(4, kernel_regularizer=kr.regularizers.GroupLasso(1e-3, axis=0))
    ```
    """

    needs_scalar_step = True

    def __init__(self, factor: Schedulable = 0.01, axis: int = -1, proximal: bool = False,
                 name: str | None = None):
        super().__init__(name=name, proximal=proximal)
        self.factor = self._hyperparameter("factor", factor)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise ArgumentTypeError(
                "Invalid value for argument `axis`: expected an integer. "
                f"Received: axis={describe(axis)}"
            )
        self.axis = int(axis)
        self._finish_init()

    def _group_axes(self, shape):
        """The axes reduced within a group, for a weight of `shape`."""
        rank = len(shape)
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"Invalid value for argument `axis` of `GroupLasso` "
                f"'{self.name}': expected an integer in [{-rank}, {rank}) for a "
                f"weight of shape {tuple(shape)}. Received: axis={self.axis}"
            )
        axis = self.axis % rank
        return tuple(a for a in range(rank) if a != axis)

    def check_weight(self, variable):
        self._group_axes(variable.shape)

    def call(self, x):
        others = self._group_axes(x.shape)
        if self.proximal:
            x = _no_gradient(x)
        squares = ops.square(x)
        if others:
            squares = ops.sum(squares, axis=others)
        # sqrt has an infinite derivative at 0: give all-zero groups gradient 0.
        # (`not_equal`, not `greater`: a NaN group must stay NaN, as in Keras.)
        nonzero = ops.not_equal(squares, 0.0)
        safe = ops.where(nonzero, squares, ops.ones_like(squares))
        norms = ops.where(nonzero, ops.sqrt(safe), ops.zeros_like(squares))
        return ops.cast(read_once(self.factor), x.dtype) * ops.sum(norms)

    def proximal_map(self, w, step_size, step):
        others = self._group_axes(w.shape)
        squares = ops.square(w)
        if others:
            squares = ops.sum(squares, axis=others, keepdims=True)
        norms = ops.sqrt(squares)
        factor = self._value_at_step("factor", self.factor, step)
        threshold = ops.cast(step_size * factor, w.dtype)
        shrunk = ops.relu(norms - threshold)
        return w * (shrunk / ops.where(ops.not_equal(norms, 0.0), norms, 1.0))

    def get_config(self):
        return {
            "factor": self._hyperparameter_config("factor", self.factor),
            "axis": self.axis,
            "proximal": self.proximal,
            "name": self.name,
        }


def _no_gradient(x):
    """`x` (a variable, tensor or array) as a tensor that gradients skip."""
    return ops.stop_gradient(ops.convert_to_tensor(x))


def _l1_proximal_map(regularizer, w, step_size, step):
    """The soft-threshold of an `l1` term: by `step_size * l1` at `step`."""
    return _soft_threshold(w, step_size * regularizer._value_at_step("l1", regularizer.l1, step))


def _soft_threshold(w, threshold):
    """`sign(w) * max(|w| - threshold, 0)`: exactly 0 where |w| <= threshold."""
    return soft_threshold(w, ops.cast(threshold, w.dtype))
