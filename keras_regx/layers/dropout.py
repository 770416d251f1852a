"""Dropout with a scheduled rate, and Monte Carlo dropout."""

from collections.abc import Sequence

import keras

from keras_regx._backend import read_once
from keras_regx._validation import Schedulable
from keras_regx.layers._base import ScheduledLayer
from keras_regx.layers._base import check_noise_shape
from keras_regx.layers._base import check_noise_shape_fits
from keras_regx.layers._base import dropout

__all__ = [
    "MCDropout",
    "ScheduledDropout",
]

_PACKAGE = "keras_regx"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScheduledDropout(ScheduledLayer):
    """Dropout whose rate is a float or follows a schedule over training.

    In training each unit is zeroed with probability `rate` and the kept ones
    are scaled by `1 / (1 - rate)`, so the expected output equals the input;
    at inference it is the identity. At a constant rate it is
    `keras.layers.Dropout` (the same kernels on TensorFlow and JAX; on
    PyTorch the mask is drawn from the layer's seed generator whatever the
    seed, where Keras' `Dropout` with `seed=None` uses torch's global
    generator). A scheduled rate is moved along
    its schedule by `keras_regx.callbacks.RegularizationDriver` inside
    compiled `fit()`, like a scheduled regularizer strength, and is logged as
    `"<layer name>/rate"`.

    Args:
        rate: float in [0, 1), or a schedule (a `keras_regx.schedules` object or
            a `keras.optimizers.schedules.LearningRateSchedule`) whose values lie
            in [0, 1), checked each time the scheduler takes one.
        noise_shape: optional tuple of ints or None, the shape of the binary
            mask, broadcast against the inputs (`None` entries take the input's
            size), as in `keras.layers.Dropout`; one entry per input axis,
            each None, 1 or the axis' size.
        seed: optional int in [0, 2**31); two layers with the same seed draw
            the same masks.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor of any rank.
        training: bool, whether to drop.

    Example:
    ```python
    >>> rate = kr.schedules.Linear(0.0, 0.5, end_step=1000)   # ramp dropout up
    >>> layer = kr.layers.ScheduledDropout(rate, name="drop")
    >>> x = np.ones((2, 3), "float32")
    >>> np.asarray(layer(x, training=False)).tolist()       # identity at inference
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    >>> y = np.asarray(kr.layers.ScheduledDropout(0.5, seed=1)(x, training=True))
    >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    ```
    """

    def __init__(self, rate: Schedulable, noise_shape: Sequence[int | None] | None = None,
                 seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = self._rate("rate", rate)
        self.noise_shape = check_noise_shape(noise_shape)
        self.supports_masking = True
        self._build_if_stateless()

    def _drops(self, training):
        return self._training(training)

    def call(self, inputs, training=False):
        # Checked in every mode and by compute_output_shape (what builds a
        # model): a float and a scheduled rate refuse the same shapes.
        check_noise_shape_fits(self.noise_shape, inputs.shape)
        if self._drops(training):
            return dropout(inputs, read_once(self.rate), self.noise_shape, self.seed_generator)
        return inputs

    def compute_output_shape(self, input_shape):
        check_noise_shape_fits(self.noise_shape, input_shape)
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self._hyperparameter_config("rate", self.rate),
            "noise_shape": self.noise_shape,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MCDropout(ScheduledDropout):
    """Dropout that keeps dropping at inference (Monte Carlo dropout).

    Gal & Ghahramani (2016) read a network trained with dropout as an
    approximate Bayesian model: predictions made with dropout still active,
    averaged over many masks, estimate the predictive mean, and their spread
    the model's uncertainty. `keras_regx.uncertainty.mc_predict` draws those samples
    in batched forward passes. Training behaviour is `ScheduledDropout`'s,
    scheduled rates included.

    Args:
        rate: float in [0, 1) or a schedule, as in `ScheduledDropout`.
        noise_shape: optional mask shape, as in `keras.layers.Dropout`.
        seed: optional int.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: a tensor of any rank.
        training: ignored; the layer always drops.

    Example:
    ```python
    >>> layer = kr.layers.MCDropout(0.5, seed=0)
    >>> y = np.asarray(layer(np.ones((1, 1000), "float32")))   # inference, still dropping
    >>> 0.4 < float((y == 0).mean()) < 0.6
    True
    ```

    Reference:
        Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing
        Model Uncertainty in Deep Learning", ICML 2016.
    """

    def _drops(self, training):
        self._training(training)
        return True
