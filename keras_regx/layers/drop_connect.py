"""DropConnect: dropout on a dense layer's weights instead of its outputs."""

from typing import Any

import keras
from keras import ops

from keras_regx._backend import read_once
from keras_regx._validation import Schedulable
from keras_regx._validation import check_bool
from keras_regx.layers._base import ScheduledLayer
from keras_regx.layers._base import keep_mask
from keras_regx.layers._base import keep_scale

__all__ = [
    "DropConnectDense",
]

_PACKAGE = "keras_regx"


def _drop_weight(weight, rate, seed):
    """Inverted dropout of a weight: `weight * keep / (1 - rate)`.

    `keep` is `keep_mask`'s uniform draw compared with the rate, applied as
    one multiply by a float mask. On PyTorch this is cheaper than
    `keras.random.dropout` (Bernoulli sampling) in the DropConnect benchmark
    step; on TensorFlow and JAX the two are the same within noise (figures:
    benchmarks/RESULTS.md).
    """
    weight = weight.value if isinstance(weight, keras.Variable) else weight
    if isinstance(rate, float):
        if rate == 0.0:
            return weight
    else:
        rate = ops.convert_to_tensor(rate)
    keep = keep_mask(ops.shape(weight), rate, seed)
    return weight * (ops.cast(keep, weight.dtype) * keep_scale(rate, weight.dtype))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DropConnectDense(ScheduledLayer, keras.layers.Dense):
    """A `Dense` layer that drops individual weights in training (DropConnect).

    In training `output = activation(inputs @ (M * kernel) / (1 - rate) + bias)`
    with `M` a Bernoulli(1 - rate) mask of the kernel's shape, drawn afresh at
    each call and shared by the samples of the batch (one mask per step, as in
    the usual implementations: its cost does not grow with the batch). The
    `1 / (1 - rate)` scaling keeps the expected output, so inference is exactly
    the dense map `activation(inputs @ kernel + bias)` -- the layer can be
    replaced by a `keras.layers.Dense` with the same weights for serving.

    Args:
        units: positive int, output dimension.
        rate: float in [0, 1), the probability of dropping each weight, or a
            schedule of such values (driven by
            `keras_regx.callbacks.RegularizationDriver`). A rate whose
            scale `1 / (1 - rate)` overflows the compute dtype (above about
            0.99998 under float16, or a scheduled rate that rounds to 1 in
            float32) drops every weight: the output is `activation(bias)`.
        activation: activation function, as in `Dense`.
        use_bias: bool, as in `Dense`.
        drop_bias: bool, also drop the bias entries with an independent mask
            (default False: only the kernel).
        seed: optional int; two layers with the same seed draw the same masks.
        **kwargs: any other `keras.layers.Dense` argument (initializers,
            regularizers, constraints, `name`, ...).

    Call arguments:
        inputs: a tensor of rank >= 2.
        training: bool, whether to drop weights.

    Example:
    ```python
    >>> layer = kr.layers.DropConnectDense(4, rate=0.5, seed=0)
    >>> x = np.ones((2, 3), "float32")
    >>> y = keras.ops.convert_to_numpy(layer(x, training=False))   # the dense map
    >>> kernel, bias = layer.get_weights()
    >>> np.allclose(y, x @ kernel + bias)
    True
    ```

    Reference:
        Wan, Zeiler, Zhang, LeCun & Fergus, "Regularization of Neural Networks
        using DropConnect", ICML 2013.
    """

    def __init__(
        self,
        units: int,
        rate: Schedulable = 0.5,
        activation: Any = None,
        use_bias: bool = True,
        drop_bias: bool = False,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(
            seed=seed, units=units, activation=activation, use_bias=use_bias, **kwargs
        )
        self.rate = self._rate("rate", rate)
        self.drop_bias = check_bool("drop_bias", drop_bias)

    def call(self, inputs, training=False):
        kernel, bias = self.kernel, self.bias
        if self._training(training):
            rate = read_once(self.rate)
            kernel = _drop_weight(kernel, rate, self.seed_generator)
            if bias is not None and self.drop_bias:
                bias = _drop_weight(bias, rate, self.seed_generator)
        x = ops.matmul(inputs, kernel)
        if bias is not None:
            x = ops.add(x, bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def quantize(self, mode=None, **kwargs):
        raise NotImplementedError(
            "DropConnectDense cannot be quantized. For inference it computes "
            "the plain dense map: copy its weights into a keras.layers.Dense "
            "(`dense.kernel.assign(layer.kernel)`, same for the bias) and quantize "
            "that."
        )

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self._hyperparameter_config("rate", self.rate),
            "drop_bias": self.drop_bias,
            "seed": self.seed,
        }
