"""What the keras_regx layers share: scheduled rates, seeds and mask code.

`keras.random.dropout` branches in Python on the rate (`rate == 1.0`), so it
only takes a float. A scheduled rate lives in a variable, so these layers
draw their own masks from `keras.random.uniform`: `keep = u >= rate` with
`u ~ U[0, 1)` keeps each unit with probability `1 - rate` exactly.

Every layer draws from its own `SeedGenerator` and saves the generator's
state with its weights (`SeededLayer`), so a model loaded from a file draws
the masks the saved one would have drawn next.
"""

import numbers

import keras
import numpy as np
from keras import ops

from keras_regx._backend import keras_dropout_draws_from_seed
from keras_regx._hyperparameters import ScheduledHyperparameters
from keras_regx._hyperparameters import revive_schedules
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import describe


# Seeds are ints in [0, SEED_LIMIT): what `keras.random.SeedGenerator` takes
# on every backend (its state is uint32 on JAX, int32 on PyTorch).
SEED_LIMIT = 2**31


def check_seed(seed):
    """Returns `seed` (an int in [0, 2**31) or None), or raises naming the argument."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ArgumentTypeError(
            "Invalid value for argument `seed`: expected an int or None. "
            f"Received: seed={describe(seed)}"
        )
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(
            f"Invalid value for argument `seed`: expected an int in [0, 2**31) "
            f"(a seed every backend accepts) or None. Received: seed={seed!r}"
        )
    return int(seed)


def check_noise_shape(noise_shape):
    """Returns `noise_shape` as a tuple of positive ints or None, or raises.

    Raises `ValueError` for every bad value, as `keras.layers.Dropout` does.
    """
    if noise_shape is None:
        return None
    if isinstance(noise_shape, (str, bytes)) or not hasattr(noise_shape, "__iter__"):
        raise ValueError(
            "Invalid value for argument `noise_shape`: expected a tuple of "
            f"positive ints or None. Received: noise_shape={describe(noise_shape)}"
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


def check_noise_shape_fits(noise_shape, input_shape):
    """Raises unless `noise_shape` broadcasts against inputs of `input_shape`.

    It needs one entry per input axis, each None, 1 or the axis' size (when
    known). Checked on the static shape, whatever the rate: a float rate
    would otherwise reach the backend's dropout, which broadcasts or fails
    differently on each backend.
    """
    if noise_shape is None:
        return
    input_shape = tuple(input_shape)
    fits = len(noise_shape) == len(input_shape) and all(
        n is None or n == 1 or s is None or n == s
        for n, s in zip(noise_shape, input_shape)
    )
    if not fits:
        raise ValueError(
            "Invalid value for argument `noise_shape`: expected a tuple with one "
            f"entry per input axis ({len(input_shape)} for inputs of shape "
            f"{input_shape}), each None, 1 or the axis' size. "
            f"Received: noise_shape={noise_shape!r}"
        )


def concrete_noise_shape(x, noise_shape):
    """`noise_shape` with its None entries filled from `x`'s shape."""
    shape = ops.shape(x)
    if noise_shape is None:
        return shape
    check_noise_shape_fits(noise_shape, x.shape)
    return tuple(s if n is None else n for n, s in zip(noise_shape, shape))


def keep_mask(shape, rate, seed):
    """A boolean mask of `shape` whose entries are True with probability `1 - rate`."""
    return keras.random.uniform(shape, seed=seed, dtype="float32") >= rate


def dropout(x, rate, noise_shape, seed):
    """Inverted dropout of `x` with a float or tensor `rate` in [0, 1).

    A float rate goes through `keras.random.dropout` (Keras' own kernels) on
    TensorFlow and JAX; a tensor rate, and any rate on PyTorch, through
    `keep_mask`. Kept entries are scaled by `1 / (1 - rate)`, so the expected
    output equals `x`.
    """
    if isinstance(x, keras.Variable):  # a weight (DropConnect)
        x = x.value
    if isinstance(rate, float):
        if rate == 0.0:
            return x
        # Where Keras' kernel would not draw from the layer's generator (see
        # `keras_dropout_draws_from_seed`), `keep_mask` does (and measured
        # faster on CPU than Keras' seeded PyTorch path). A rate whose scale
        # overflows the dtype (Keras' kernels would give inf and nan) takes
        # `keep_scale`'s 0 below too.
        scale = keep_scale(rate, x.dtype)
        if keras_dropout_draws_from_seed() and scale != 0.0:
            return keras.random.dropout(x, rate, noise_shape=noise_shape, seed=seed)
    else:
        rate = ops.convert_to_tensor(rate)
        scale = keep_scale(rate, x.dtype)
    keep = keep_mask(concrete_noise_shape(x, noise_shape), rate, seed)
    return ops.where(keep, x * scale, ops.zeros((), dtype=x.dtype))


def keep_scale(rate, dtype):
    """`1 / (1 - rate)` in `dtype`, or 0 where that overflows `dtype`.

    The scale overflows for a rate within about 1.5e-5 of 1 under float16
    (`1 / (1 - rate)` above 65504), or a scheduled float32 rate that rounds to
    1. With so few units kept, the limit `rate -> 1` is taken: a scale of 0
    drops everything, so outputs and gradients stay finite instead of
    `0 * inf = nan`. A float rate gives a Python float (checked on the host,
    where a backend would warn about the overflowing cast), a tensor rate a
    scalar tensor of `dtype`.
    """
    if isinstance(rate, float):
        scale = 1.0 / (1.0 - rate)
        with np.errstate(over="ignore"):
            fits = np.isfinite(np.float32(scale).astype(keras.backend.standardize_dtype(dtype)))
        return scale if fits else 0.0
    scale = ops.cast(1.0 / (1.0 - ops.convert_to_tensor(rate, "float32")), dtype)
    return ops.where(ops.isfinite(scale), scale, ops.zeros((), dtype))


class SeededLayer(keras.layers.Layer):
    """Base class: a layer that draws its randomness from its own seed.

    Keeps `seed` as given (checked by `check_seed`) and draws from a separate
    `SeedGenerator`, as Keras' `Dropout` does: tracked layer state, so JAX's
    compiled steps advance it. The other arguments go to the next base's
    `__init__` (`keras.layers.Layer`, or a second base listed after this one:
    `keras.layers.Dense`, `keras.layers.Wrapper`).

    Saves the generator's state after the layer's own variables (Keras'
    `Dropout` does not save it): a model loaded from a file draws the masks
    the original would have drawn next, so Monte Carlo inference and resumed
    training are reproducible across save and load, with `seed=None` too
    (the generator then starts from a random state, which is saved). Files
    written without the state, by earlier versions, still load; the
    generator then keeps its fresh state.
    """

    def __init__(self, *args, seed=None, **kwargs):
        seed = check_seed(seed)
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _saved_variables(self):
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


class ScheduledLayer(ScheduledHyperparameters, SeededLayer):
    """Base class: a seeded layer (`SeededLayer`) with schedulable arguments.

    A scheduled argument's variable is created in `__init__`, so that it
    exists before any call (Keras refuses new state on a built layer).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._init_scheduled()

    def _build_if_stateless(self):
        """Marks the layer built unless its class overrides `build()`.

        Called last in `__init__`, once all state exists. A layer whose state
        is all created there is built at construction, as Keras' `Dropout`
        is; a subclass that overrides `build()` (to create weights, say) is
        left unbuilt, so that Keras calls its `build()` on the first call.
        """
        if type(self).build is keras.layers.Layer.build:
            self.built = True

    def _rate(self, name, value):
        """A drop rate: a float in [0, 1) or a schedule of such values."""
        return self._hyperparameter(name, value, minimum=0.0, maximum=1.0)

    def _training(self, training):
        """Whether this call trains; warns once if its schedules go undriven."""
        if training:
            self._warn_if_unscheduled()
        return bool(training)

    @classmethod
    def from_config(cls, config):
        return cls(**revive_schedules(config))
