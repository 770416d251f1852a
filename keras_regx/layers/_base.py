"""What the keras_regx layers share: scheduled rates, seeds and mask code.

`keras.random.dropout` branches in Python on the rate (`rate == 1.0`), so it
only takes a float. A scheduled rate lives in a variable, so these layers
draw their own masks from `keras.random.uniform`: `keep = u >= rate` with
`u ~ U[0, 1)` keeps each unit with probability `1 - rate` exactly.
"""

import numbers

import keras
from keras import ops

from keras_regx._hyperparameters import ScheduledHyperparameters
from keras_regx.schedules import _describe


def check_seed(seed):
    """Returns `seed` (an int or None), or raises naming the argument."""
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
    ):
        raise TypeError(
            "Invalid value for argument `seed`: expected an int or None. "
            f"Received: seed={_describe(seed)}"
        )
    return None if seed is None else int(seed)


def check_noise_shape(noise_shape):
    """Returns `noise_shape` as a tuple of positive ints or None, or raises."""
    if noise_shape is None:
        return None
    if isinstance(noise_shape, (str, bytes)) or not hasattr(noise_shape, "__iter__"):
        raise TypeError(
            "Invalid value for argument `noise_shape`: expected a tuple of "
            f"positive ints or None. Received: noise_shape={_describe(noise_shape)}"
        )
    noise_shape = tuple(noise_shape)
    for dim in noise_shape:
        if dim is not None and (
            isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1
        ):
            raise ValueError(
                "Invalid value for argument `noise_shape`: expected a tuple of "
                f"positive ints or None. Received: noise_shape={noise_shape!r}"
            )
    return tuple(None if dim is None else int(dim) for dim in noise_shape)


def concrete_noise_shape(x, noise_shape):
    """`noise_shape` with its None entries filled from `x`'s shape."""
    shape = ops.shape(x)
    if noise_shape is None:
        return shape
    if len(noise_shape) != len(shape):
        raise ValueError(
            f"`noise_shape` {noise_shape} has {len(noise_shape)} dimensions; "
            f"the inputs have {len(shape)} (shape {tuple(shape)})."
        )
    return tuple(s if n is None else n for n, s in zip(noise_shape, shape))


def keep_mask(shape, rate, seed):
    """A boolean mask of `shape` whose entries are True with probability `1 - rate`."""
    return keras.random.uniform(shape, seed=seed, dtype="float32") >= rate


def dropout(x, rate, noise_shape, seed):
    """Inverted dropout of `x` with a float or tensor `rate` in [0, 1).

    A float rate goes through `keras.random.dropout` (Keras' own kernels); a
    tensor rate through `keep_mask`. Kept entries are scaled by
    `1 / (1 - rate)`, so the expected output equals `x`.
    """
    if isinstance(x, keras.Variable):  # a weight (DropConnect)
        x = x.value
    if isinstance(rate, float):
        if rate == 0.0:
            return x
        return keras.random.dropout(x, rate, noise_shape=noise_shape, seed=seed)
    rate, scale = keep_scale(rate, x.dtype)
    keep = keep_mask(concrete_noise_shape(x, noise_shape), rate, seed)
    return ops.where(keep, x * scale, ops.zeros((), dtype=x.dtype))


def keep_scale(rate, dtype):
    """`(rate, 1 / (1 - rate))`: a float rate as floats, else as tensors (scale in `dtype`)."""
    if isinstance(rate, float):
        return rate, 1.0 / (1.0 - rate)
    rate = ops.convert_to_tensor(rate)
    return rate, ops.cast(1.0 / (1.0 - rate), dtype)


class ScheduledLayer(ScheduledHyperparameters, keras.layers.Layer):
    """Base class: a layer with schedulable arguments and its own seed.

    Keeps `seed` as given and draws from a separate `SeedGenerator` (tracked
    layer state, so JAX's compiled steps advance it), as Keras' `Dropout` does.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self._init_scheduled()
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def _rate(self, name, value):
        """A drop rate: a float in [0, 1) or a schedule of such values."""
        return self._hyperparameter(name, value, minimum=0.0, maximum=1.0)

    def _training(self, training):
        """Whether this call trains; warns once if its schedules go undriven."""
        if training:
            self._warn_if_unscheduled()
        return bool(training)

    def _saved_variables(self):
        # The seed generator's state is saved too (Keras' Dropout does not save
        # it): a model loaded from a file draws the masks the original would
        # have drawn next, so inference with MCDropout and resumed training
        # are reproducible across save and load.
        return (
            self._trainable_variables
            + self._non_trainable_variables
            + [self.seed_generator.state]
        )

    def save_own_variables(self, store):
        # Every variable by position, as `keras.layers.Layer` does; subclasses
        # of `Dense` use this too, so a scheduled rate is saved with them.
        for i, variable in enumerate(self._saved_variables()):
            store[str(i)] = variable

    def load_own_variables(self, store):
        variables = self._saved_variables()
        count = len(store.keys())
        if count == len(variables) - 1:  # written without the seed state
            variables = variables[:-1]
        elif count != len(variables):
            raise ValueError(
                f"Layer '{self.name}' expected {len(variables)} saved "
                f"variables ({[v.path for v in variables]}); the file has {count}."
            )
        for i, variable in enumerate(variables):
            variable.assign(store[str(i)])

    @classmethod
    def from_config(cls, config):
        return cls(**config)
