"""L1, L2 and ElasticNet weight regularizers whose strength may follow a schedule.

At a constant strength each one computes exactly what Keras' own
`keras.regularizers.L1` / `L2` / `L1L2` compute, with the same operations. A
strength may instead be a schedule (`keras_regx.schedules.*` or any
`keras.optimizers.schedules.LearningRateSchedule`); the
`keras_regx.callbacks.RegularizationScheduler` callback then moves it along its
schedule during `fit()`.

The regularizers are also Keras layers (never called as layers): a Keras layer
tracks a layer assigned to one of its attributes, so the strength variable of a
regularizer passed as `kernel_regularizer=` joins the model's state. That is
what keeps a schedule live inside the compiled JAX train step, and what saves
the current strength with the model.
"""

import keras

from keras_regx._hyperparameters import ScheduledHyperparameters
from keras_regx._penalties import elastic_net

_PACKAGE = "keras_regx"


class ScheduledRegularizer(
    ScheduledHyperparameters, keras.regularizers.Regularizer, keras.layers.Layer
):
    """Base class: a regularizer whose strengths may follow schedules."""

    def __init__(self, name=None):
        keras.layers.Layer.__init__(self, name=name, dtype="float32", trainable=False)
        self._init_scheduled()

    def _finish_init(self):
        self.built = True

    def __call__(self, x):
        self._warn_if_unscheduled(x)
        return self.call(x)

    def call(self, x):
        raise NotImplementedError

    def compute_output_spec(self, x):
        return keras.KerasTensor((), dtype=x.dtype)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L1(ScheduledRegularizer):
    """L1 weight penalty with a constant or scheduled strength.

    `loss = l1 * sum(abs(x))`, identical to `keras.regularizers.L1` at a
    constant `l1`.

    Args:
        l1: float >= 0, or a schedule (a `keras_regx.schedules` object or a
            `keras.optimizers.schedules.LearningRateSchedule`) giving the
            strength at each optimizer step.
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

    def __init__(self, l1=0.01, name=None):
        super().__init__(name=name)
        self.l1 = self._hyperparameter("l1", l1)
        self._finish_init()

    def call(self, x):
        return elastic_net(x, self.l1, None)

    def get_config(self):
        return {"l1": self._hyperparameter_config("l1", self.l1), "name": self.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L2(ScheduledRegularizer):
    """L2 weight penalty with a constant or scheduled strength.

    `loss = l2 * sum(square(x))`, identical to `keras.regularizers.L2` at a
    constant `l2`.

    Args:
        l2: float >= 0, or a schedule giving the strength at each step.
        name: optional name, used for the strength's key in `fit()` logs.

    Example:
    ```python
    >>> float(kr.regularizers.L2(0.5)(np.array([[-1.0, 2.0]], "float32")))
    2.5
    ```
    """

    def __init__(self, l2=0.01, name=None):
        super().__init__(name=name)
        self.l2 = self._hyperparameter("l2", l2)
        self._finish_init()

    def call(self, x):
        return elastic_net(x, None, self.l2)

    def get_config(self):
        return {"l2": self._hyperparameter_config("l2", self.l2), "name": self.name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ElasticNet(ScheduledRegularizer):
    """L1 plus L2 weight penalty, each strength constant or scheduled.

    `loss = l1 * sum(abs(x)) + l2 * sum(square(x))`, identical to
    `keras.regularizers.L1L2` at constant strengths (a term whose constant
    strength is 0 is skipped, as Keras does).

    Args:
        l1: float >= 0 or a schedule.
        l2: float >= 0 or a schedule.
        name: optional name, used for the strengths' keys in `fit()` logs
            (`"<name>/l1"`, `"<name>/l2"`).

    Example:
    ```python
    >>> float(kr.regularizers.ElasticNet(l1=0.5, l2=0.5)(np.array([[-1.0, 2.0]], "float32")))
    4.0
    ```
    """

    def __init__(self, l1=0.01, l2=0.01, name=None):
        super().__init__(name=name)
        self.l1 = self._hyperparameter("l1", l1)
        self.l2 = self._hyperparameter("l2", l2)
        self._finish_init()

    def call(self, x):
        # A term whose constant strength is 0 is skipped, as Keras does.
        l1 = self.l1 if "l1" in self._scheduled or self.l1 != 0.0 else None
        l2 = self.l2 if "l2" in self._scheduled or self.l2 != 0.0 else None
        return elastic_net(x, l1, l2)

    def get_config(self):
        return {
            "l1": self._hyperparameter_config("l1", self.l1),
            "l2": self._hyperparameter_config("l2", self.l2),
            "name": self.name,
        }
