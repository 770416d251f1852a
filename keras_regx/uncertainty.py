"""Uncertainty from stochastic layers: Monte Carlo prediction."""

import numbers
from typing import Any

import keras
from keras import ops

from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import describe

__all__ = [
    "mc_predict",
]


class _MonteCarloSampler(keras.Model):
    """Runs `model` on `samples` stacked copies of each batch in one pass."""

    def __init__(self, model, samples):
        super().__init__(name="monte_carlo_sampler")
        self.sampled = model
        self.samples = samples
        self.built = True

    def call(self, inputs):
        stacked = keras.tree.map_structure(
            lambda x: ops.concatenate([x] * self.samples, axis=0), inputs
        )
        outputs = self.sampled(stacked, training=False)
        draws = keras.tree.map_structure(self._split, outputs)
        mean = keras.tree.map_structure(lambda d: ops.mean(d, axis=0), draws)
        std = keras.tree.map_structure(lambda d: ops.std(d, axis=0), draws)
        return mean, std

    def _split(self, y):
        # (samples * batch, ...) -> (samples, batch, ...), computed in float32.
        y = ops.cast(y, "float32")
        shape = ops.shape(y)
        return ops.reshape(y, (self.samples, shape[0] // self.samples) + tuple(shape[1:]))


def mc_predict(model: keras.Model, x: Any, samples: int = 30, batch_size: int | None = None,
               verbose: int | str = 0) -> tuple[Any, Any]:
    """Monte Carlo predictions: the mean and spread over dropout masks.

    Runs `model` on `x` with its stochastic-at-inference layers
    (`keras_regx.layers.MCDropout`, `ConcreteDropout`) drawing a fresh mask for
    each of `samples` passes, and returns the per-entry mean and standard
    deviation (`ddof=0`) over the passes. The samples of a batch are drawn in
    one compiled forward pass on `samples` stacked copies of the batch (not a
    loop of `model.predict` calls), so each pass holds
    `samples * batch_size` rows. Layers that are deterministic at inference
    (Keras' `Dropout`, `BatchNormalization`) stay so: a model without
    stochastic layers gives `std == 0`.

    Args:
        model: a built Keras model (any number of inputs and outputs).
        x: its inputs, anything `model.predict` accepts batched by
            `batch_size` (NumPy arrays, a list or dict of them, ...).
        samples: int >= 1, number of Monte Carlo samples.
        batch_size: int or None (32), rows of `x` per forward pass.
        verbose: `model.predict`'s verbosity.

    Returns:
        `(mean, std)`, NumPy arrays in float32 shaped like `model.predict(x)`
        (for several outputs, two structures like it).

    Example:
    ```python
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, "relu"),
    ...                           kr.layers.MCDropout(0.3), keras.layers.Dense(1)])
    >>> mean, std = kr.uncertainty.mc_predict(model, np.ones((5, 4), "float32"), samples=20)
    >>> mean.shape, std.shape
    ((5, 1), (5, 1))
    ```

    Reference:
        Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing
        Model Uncertainty in Deep Learning", ICML 2016.
    """
    if not isinstance(model, keras.Model):
        raise ArgumentTypeError(
            "Invalid value for argument `model`: expected a keras.Model. "
            f"Received: model={describe(model)}"
        )
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral):
        raise ArgumentTypeError(
            "Invalid value for argument `samples`: expected an int >= 1. "
            f"Received: samples={describe(samples)}"
        )
    if samples < 1:
        raise ValueError(
            "Invalid value for argument `samples`: expected an int >= 1. "
            f"Received: samples={samples!r}"
        )
    if not model.built:
        raise ValueError(
            "mc_predict needs a built model: call it on data or give it an "
            "`Input` first."
        )
    # One sampler per (model, samples), kept on the model so that its compiled
    # predict step is reused. Set past Keras' attribute tracking: the sampler
    # is not part of the model (not saved, not a sublayer).
    samplers = model.__dict__.get("_keras_regx_mc_samplers")
    if samplers is None:
        samplers = {}
        object.__setattr__(model, "_keras_regx_mc_samplers", samplers)
    if samples not in samplers:
        samplers[samples] = _MonteCarloSampler(model, int(samples))
    return samplers[samples].predict(x, batch_size=batch_size, verbose=verbose)
