"""Concrete dropout: a wrapper that learns its layer's input drop rate."""

import math

import keras
from keras import ops

from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import check_bool
from keras_regx._validation import check_real
from keras_regx._validation import describe
from keras_regx.layers._base import SeededLayer

__all__ = [
    "ConcreteDropout",
]

_PACKAGE = "keras_regx"
# Keeps the logistic noise finite: u is drawn from [_EPS, 1 - _EPS) (float32).
_EPS = 1e-7


def _check_probability(name, value):
    """Returns `value` as a float in the open interval (0, 1), or raises."""
    value = check_real(name, value)
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a float in (0, 1). "
            f"Received: {name}={value!r}"
        )
    return value


def _logit(p):
    return math.log(p) - math.log1p(-p)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConcreteDropout(SeededLayer, keras.layers.Wrapper):
    """Wraps a layer and learns the dropout rate of its inputs (Concrete dropout).

    The drop probability `p = sigmoid(p_logit)` is a trainable weight of the
    wrapper. Each call drops the wrapped layer's inputs with a relaxed
    (Concrete) Bernoulli mask, differentiable in `p`:
    `z = sigmoid((log p - log(1 - p) + log u - log(1 - u)) / temperature)` with
    `u ~ U(0, 1)` per input entry, and the layer sees
    `inputs * (1 - z) / (1 - p)`. Two terms are added to the training loss
    (through `add_loss`, on every call): the weight term
    `weight_regularizer * sum(kernel**2) / (1 - p)` and the dropout term
    `dropout_regularizer * K * (p * log(p) + (1 - p) * log(1 - p))`, with `K`
    the number of input entries the mask covers per sample (the product of the
    input shape without the batch axis). The first pushes `p` down, the second
    (a negative entropy) towards 0.5, and the data term decides in between: the
    learned rate falls as the data set grows.

    With a data set of `N` examples, a prior length-scale `l` and the mean
    squared error, the paper sets `weight_regularizer = l**2 / N` and
    `dropout_regularizer = 2 / N` (drop the factor 2 for cross-entropy; with
    a model precision `tau`, divide both by `tau`). The defaults (`1e-6`,
    `1e-5`) are those of the reference code: `N = 200_000` and `l = 0.45`.

    Which weights: the weight term takes the wrapped layer's `kernel` (or the
    `depthwise_kernel` of a separable convolution), the weight
    that multiplies the dropped inputs, as the reference Keras code does. The
    `1 / (1 - p)` comes from that product: the rescaled inputs
    `x / (1 - p)` times `kernel` equal `x` times the weight `kernel / (1 - p)`
    whose prior the paper's term describes. A bias does not multiply the
    inputs, so dividing its norm by `1 - p` would tie bias decay to the drop
    rate without reason (the reference PyTorch code sums all parameters);
    regularize it with the wrapped layer's `bias_regularizer` if wanted, and
    leave its `kernel_regularizer` unset, which this term replaces. A layer
    with neither kernel is refused when the wrapper is built. A wrapper called
    several times in one step (shared between branches) adds its terms once
    per call, as Keras' activity regularizers do.

    Inference follows the paper: masks are still sampled (Monte Carlo dropout),
    so predictions are random and are averaged over samples, e.g. with
    `keras_regx.uncertainty.mc_predict`. With `mc_inference=False` the wrapper is the
    identity on the inputs outside training (the standard dropout
    approximation: the mask replaced by its mean, 1). The noise and `p` are
    computed in float32 whatever the layer's dtype. The state of the mask
    generator is saved with the model, so a loaded model draws the masks the
    saved one would have drawn next.

    Args:
        layer: a `keras.layers.Layer` with a `kernel` (`Dense`, `EinsumDense`,
            `Conv*D`, `Conv*DTranspose`, `DepthwiseConv*D`) or a
            `depthwise_kernel` (`SeparableConv*D`).
        weight_regularizer: float >= 0, the weight term's factor, `l**2 / N`.
        dropout_regularizer: float >= 0, the dropout term's factor, `2 / N`.
        init_min: float in (0, 1), the lowest initial drop rate.
        init_max: float in [init_min, 1), the highest initial drop rate; the
            initial `p_logit` is uniform between `logit(init_min)` and
            `logit(init_max)`.
        temperature: float > 0, the relaxation's temperature; lower is closer
            to a binary mask (with a noisier gradient). The paper uses 0.1.
        mc_inference: bool, whether to keep sampling masks outside training
            (the default, as in the paper); False makes inference deterministic.
        seed: optional int in [0, 2**31); two wrappers with the same seed
            draw the same masks (and, with `init_min < init_max`, the same
            initial rate).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the wrapped layer's inputs (one tensor).
        training: bool, whether the call trains; masks are drawn when it is
            True or `mc_inference` is True.

    Attributes:
        rate: the current learned drop probability `sigmoid(p_logit)`, a float.

    Example:
    ```python
    >>> n, length_scale = 1000, 1e-2       # data set size, prior length-scale
    >>> layer = kr.layers.ConcreteDropout(
    ...     keras.layers.Dense(4),
    ...     weight_regularizer=length_scale**2 / n,
    ...     dropout_regularizer=2 / n,
    ...     seed=0,
    ... )
    >>> round(layer.rate, 6)                 # init_min = init_max = 0.1
    0.1
    >>> x = np.ones((2, 3), "float32")
    >>> tuple(layer(x).shape)                # masks drawn: MC inference
    (2, 4)
    >>> len(layer.losses)                    # the two terms, summed, from the call
    1
    >>> model = keras.Sequential([keras.Input((3,)), layer])
    >>> model.compile("adam", "mse")
    >>> _ = model.fit(x, np.ones((2, 4)), epochs=2, verbose=0)
    >>> layer.rate != 0.1                    # the rate is trained with the model
    True
    ```

    Reference:
        Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017;
        reference code: https://github.com/yaringal/ConcreteDropout
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        weight_regularizer: float = 1e-6,
        dropout_regularizer: float = 1e-5,
        init_min: float = 0.1,
        init_max: float = 0.1,
        temperature: float = 0.1,
        mc_inference: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise ArgumentTypeError(
                "Invalid value for argument `layer`: expected a keras.layers.Layer "
                f"instance, such as keras.layers.Dense(8). Received: layer={describe(layer)}"
            )
        self.weight_regularizer = check_real(
            "weight_regularizer", weight_regularizer, minimum=0.0
        )
        self.dropout_regularizer = check_real(
            "dropout_regularizer", dropout_regularizer, minimum=0.0
        )
        self.init_min = _check_probability("init_min", init_min)
        self.init_max = _check_probability("init_max", init_max)
        if self.init_max < self.init_min:
            raise ValueError(
                "Invalid value for argument `init_max`: expected a float >= "
                f"init_min={self.init_min!r} and < 1. Received: init_max={self.init_max!r}"
            )
        self.temperature = check_real("temperature", temperature, minimum=0.0, strict=True)
        self.mc_inference = check_bool("mc_inference", mc_inference)
        super().__init__(layer, seed=seed, **kwargs)
        low, high = _logit(self.init_min), _logit(self.init_max)
        if low == high:
            initializer = keras.initializers.Constant(low)
        else:
            initializer = keras.initializers.RandomUniform(low, high, seed=self.seed)
        # Created here rather than in build() so that `rate` reads before the
        # first call; float32 whatever the policy, like the noise.
        self.p_logit = self.add_weight(
            shape=(),
            dtype="float32",
            initializer=initializer,
            trainable=True,
            autocast=False,
            name="p_logit",
        )

    @property
    def rate(self):
        """The current drop probability, `sigmoid(p_logit)`, as a Python float."""
        return float(ops.convert_to_numpy(ops.sigmoid(self.p_logit)))

    def build(self, input_shape=None):
        super().build(input_shape)
        self._kernel()
        self.built = True

    def _kernel(self):
        """The wrapped layer's weight that multiplies the dropped inputs."""
        for name in ("kernel", "depthwise_kernel"):
            kernel = getattr(self.layer, name, None)
            if kernel is not None:
                return kernel
        raise ValueError(
            f"ConcreteDropout needs a wrapped layer with a `kernel` or a "
            f"`depthwise_kernel` (Dense, EinsumDense, Conv*), whose squared norm "
            f"makes the weight term. Received: layer={self.layer.__class__.__name__} "
            f"named {self.layer.name!r}, which has neither once built."
        )

    def _regularization(self, p_logit, inputs):
        kernel = ops.cast(self._kernel(), "float32")
        keep_prob = ops.sigmoid(-p_logit)  # 1 - p, without cancellation
        p = ops.sigmoid(p_logit)
        weight_term = self.weight_regularizer * ops.sum(ops.square(kernel)) / keep_prob
        neg_entropy = p * ops.log_sigmoid(p_logit) + keep_prob * ops.log_sigmoid(-p_logit)
        input_dim = 1
        for size in ops.shape(inputs)[1:]:
            input_dim = input_dim * size
        input_dim = ops.cast(input_dim, "float32")
        return weight_term + self.dropout_regularizer * input_dim * neg_entropy

    def _concrete_dropout(self, inputs, p_logit):
        u = keras.random.uniform(
            ops.shape(inputs),
            minval=_EPS,
            maxval=1.0 - _EPS,
            dtype="float32",
            seed=self.seed_generator,
        )
        # log p - log(1 - p) is p_logit; 1 - z = sigmoid(-a) and 1 - p =
        # sigmoid(-p_logit) are computed directly, stable at either end.
        a = (p_logit + ops.log(u) - ops.log1p(-u)) / self.temperature
        scale = ops.sigmoid(-a) / ops.sigmoid(-p_logit)
        return inputs * ops.cast(scale, inputs.dtype)

    def call(self, inputs, training=False):
        p_logit = ops.cast(self.p_logit, "float32")
        self.add_loss(self._regularization(p_logit, inputs))
        if training or self.mc_inference:
            inputs = self._concrete_dropout(inputs, p_logit)
        return self.layer(inputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Wrapper.from_config pops "layer" from the dict it is given: copy it.
        return super().from_config(dict(config), custom_objects=custom_objects)

    def get_config(self):
        return {
            **super().get_config(),
            "weight_regularizer": self.weight_regularizer,
            "dropout_regularizer": self.dropout_regularizer,
            "init_min": self.init_min,
            "init_max": self.init_max,
            "temperature": self.temperature,
            "mc_inference": self.mc_inference,
            "seed": self.seed,
        }
