"""DropPath (stochastic depth) for residual branches."""

import keras

from keras_regx._backend import read_once
from keras_regx._validation import Schedulable
from keras_regx.layers._base import ScheduledLayer
from keras_regx.layers._base import dropout

__all__ = [
    "DropPath",
    "StochasticDepth",
]

_PACKAGE = "keras_regx"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DropPath(ScheduledLayer):
    """Drops whole samples of a residual branch (stochastic depth).

    In training each sample's branch output is zeroed with probability `rate`
    and kept ones are scaled by `1 / (1 - rate)`, so that `x + DropPath(r)(f(x))`
    skips the block `f` for a random subset of the batch and keeps its expected
    value; at inference it is the identity. Apply it to the branch, before the
    residual addition. `StochasticDepth` is the same class. The rate may follow
    a schedule (e.g. grow over training), driven by
    `keras_regx.callbacks.RegularizationDriver`; for the usual depth-wise
    rule give block `i` of `n` the rate `max_rate * i / (n - 1)`.

    Args:
        rate: float in [0, 1), the probability of dropping a sample's branch,
            or a schedule of such values.
        seed: optional int in [0, 2**31); two layers with the same seed draw
            the same masks.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: the residual branch's output, batch first, of any rank.
        training: bool, whether to drop.

    Example:
    ```python
    >>> inputs = keras.Input((8,))
    >>> branch = keras.layers.Dense(8, activation="relu")(inputs)
    >>> outputs = keras.layers.Add()([inputs, kr.layers.DropPath(0.2)(branch)])
    >>> model = keras.Model(inputs, outputs)
    >>> y = np.asarray(kr.layers.DropPath(0.5, seed=0)(np.ones((6, 2), "float32"), training=True))
    >>> all(row in ([0.0, 0.0], [2.0, 2.0]) for row in y.tolist())   # whole samples
    True
    ```

    Reference:
        Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic
        Depth", ECCV 2016.
    """

    def __init__(self, rate: Schedulable, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = self._rate("rate", rate)
        self.supports_masking = True
        self._build_if_stateless()

    def call(self, inputs, training=False):
        if not self._training(training):
            return inputs
        noise_shape = (None,) + (1,) * (len(inputs.shape) - 1)
        return dropout(inputs, read_once(self.rate), noise_shape, self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self._hyperparameter_config("rate", self.rate),
            "seed": self.seed,
        }


StochasticDepth = DropPath
