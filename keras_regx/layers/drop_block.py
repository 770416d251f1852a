"""DropBlock: dropout of contiguous blocks of a feature map (Ghiasi et al., 2018).

The mask is exact rather than the paper's approximation. A block seed is a
candidate at every place where a block that overlaps the input can start:
the input's positions and the `block - 1` before them along each spatial
axis. Each seed drops the block that starts at it, clipped to the input.
Every unit then lies in the blocks of exactly `n = prod(block)` candidate
seeds, wherever it sits, so with a seed probability
`gamma = 1 - (1 - rate) ** (1 / n)` it is dropped with probability
`1 - (1 - gamma) ** n = rate` exactly: at edges and corners, on non-square
inputs, and for blocks larger than the input. A block longer than the input
along an axis is first clipped to the input's length there (a huge
`block_size` is the input-sized block), so the noise stays within
`2 ** rank` times the input's size. (The paper's
`gamma = rate / block**2 * size**2 / (size - block + 1)**2` ignores that
blocks overlap, and its seeds lie only where a whole block fits, so units
near the edges are dropped less often than the rest.)

Sampling: with `u ~ U[0, 1)` on the extended grid, a seed is `u >= 1 - gamma`,
so a unit is kept when the maximum of `u` over the `n` candidates is below
`t = (1 - rate) ** (1 / n)`. One sliding-window maximum (separable: one axis
at a time, stride 1, 'valid') and one comparison give the keep mask, with a
float or a tensor (scheduled) rate alike. Where TensorFlow traces a step
with unknown spatial sizes, the clipped block is known only when it runs,
and windows along those axes count dropped seeds with cumulative sums.
"""

import functools
import math
import numbers
import operator

import keras
from keras import ops

from keras_regx._backend import fast_stride_one_pooling
from keras_regx._backend import read_once
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import Schedulable
from keras_regx._validation import describe
from keras_regx.layers._base import ScheduledLayer
from keras_regx.layers._base import keep_scale

__all__ = [
    "DropBlock1D",
    "DropBlock2D",
]

_PACKAGE = "keras_regx"
_DATA_FORMATS = ("channels_last", "channels_first")


def check_block_size(block_size, rank):
    """Returns `block_size` as a positive int or, for `rank` > 1, a tuple of `rank` of them."""
    expected = "a positive int"
    if rank > 1:
        expected += f" or a tuple of {rank} positive ints"
    prefix = f"Invalid value for argument `block_size`: expected {expected}. Received: "
    is_tuple = rank > 1 and isinstance(block_size, (list, tuple))
    if is_tuple and len(block_size) != rank:
        raise ValueError(f"{prefix}block_size={block_size!r} (of length {len(block_size)})")
    for size in block_size if is_tuple else (block_size,):
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            if is_tuple:
                received = f"{block_size!r} (with an entry of type {type(size).__name__})"
            else:
                received = describe(block_size)
            raise ArgumentTypeError(f"{prefix}block_size={received}")
        if size < 1:
            raise ValueError(f"{prefix}block_size={block_size!r}")
    return tuple(int(size) for size in block_size) if is_tuple else int(block_size)


def check_data_format(data_format):
    """Returns `data_format` resolved against `keras.config.image_data_format()`."""
    if data_format is None:
        return keras.config.image_data_format()
    if not isinstance(data_format, str):
        raise ArgumentTypeError(
            "Invalid value for argument `data_format`: expected one of "
            f"{_DATA_FORMATS} or None. Received: data_format={describe(data_format)}"
        )
    if data_format.lower() not in _DATA_FORMATS:
        raise ValueError(
            "Invalid value for argument `data_format`: expected one of "
            f"{_DATA_FORMATS} or None. Received: data_format={data_format!r}"
        )
    return data_format.lower()


def _window_max(x, axis, size):
    """The maximum of `x` over windows of `size` along `axis` (stride 1, 'valid').

    `x` is channels-last. Keras' pooling where it is the fastest, else a
    log-depth maximum of shifted slices (see `fast_stride_one_pooling`).
    """
    if size == 1:
        return x
    if fast_stride_one_pooling():
        pool_size = [1] * (len(x.shape) - 2)
        pool_size[axis - 1] = size
        return ops.max_pool(x, tuple(pool_size), strides=1, padding="valid",
                            data_format="channels_last")

    def shifted(value, start, stop):
        index = [slice(None)] * len(value.shape)
        index[axis] = slice(start, stop)
        return value[tuple(index)]

    # Window maxima of width 1, 2, 4, ..., p <= size, then two overlapping
    # windows of width p cover `size`.
    width = 1
    while 2 * width <= size:
        x = ops.maximum(shifted(x, None, -width), shifted(x, width, None))
        width *= 2
    if size > width:
        x = ops.maximum(shifted(x, None, width - size), shifted(x, size - width, None))
    return x


def _window_all(keep, axis, width, size):
    """Whether `keep` holds over windows of `width` along `axis` (stride 1, 'valid').

    For a `width` and `size` known only when the step runs (TensorFlow
    traces with unknown spatial sizes), where pooling needs a static window:
    a window's count of False entries is a difference of cumulative sums.
    """
    dropped = ops.cast(ops.logical_not(keep), "int32")
    upto = ops.cumsum(dropped, axis=axis)  # False entries in [0, i]

    def along(value, start, stop):
        index = [slice(None)] * len(value.shape)
        index[axis] = slice(start, stop)
        return value[tuple(index)]

    # False entries in [i, i + width - 1], for i in [0, size).
    in_window = along(upto, width - 1, width - 1 + size) - along(upto - dropped, 0, size)
    return in_window == 0


# A block side is cut to this before it meets a size known only when the
# step runs (TensorFlow's int32 shapes): any int is a valid `block_size`.
_INT32_MAX = 2**31 - 1


def _window(block, size):
    """The block's extent along an axis of `size`: at most `size`, at least 1.

    Clipped to the input, a block still drops each unit with probability
    `rate`, and the noise has at most `2 * size - 1` places along the axis
    whatever `block_size` is.
    """
    if block == 1:
        return 1
    if isinstance(size, int):
        return max(min(block, size), 1)
    return ops.maximum(ops.minimum(min(block, _INT32_MAX), size), 1)


def keep_block_mask(shape, block, rate, seed):
    """A channels-last boolean keep mask of `shape` made of dropped blocks.

    Each entry is False with probability `rate` (a float or a tensor), in
    blocks of `block` clipped to the input. `shape` is (batch, *spatial,
    channels), possibly with tensor entries.
    """
    spatial = shape[1:-1]
    windows = [_window(b, s) for b, s in zip(block, spatial)]
    n = functools.reduce(operator.mul, windows)
    if isinstance(rate, float) and isinstance(n, int):
        threshold = math.exp(math.log1p(-rate) / n)
    else:
        rate = ops.convert_to_tensor(rate, "float32")
        threshold = ops.exp(ops.log1p(-rate) / ops.cast(n, "float32"))
    noise_shape = [shape[0], *(s + w - 1 for s, w in zip(spatial, windows)), shape[-1]]
    # Drawn flat: JAX compiled a rank-4 draw in 2.4 s, a flat one in 0.4 s
    # (CPU, 92k values), and ran both equally fast.
    size = functools.reduce(operator.mul, noise_shape)
    u = ops.reshape(keras.random.uniform((size,), seed=seed, dtype="float32"), noise_shape)
    for axis, width in enumerate(windows, start=1):
        if isinstance(width, int):
            u = _window_max(u, axis, width)
    keep = u < threshold
    for axis, width in enumerate(windows, start=1):
        if not isinstance(width, int):
            keep = _window_all(keep, axis, width, spatial[axis - 1])
    return keep


class _DropBlock(ScheduledLayer):
    """DropBlock over `_RANK` spatial axes; subclasses set `_RANK`."""

    _RANK = None
    _AXES = None  # names of the spatial axes, for error messages

    def __init__(self, rate: Schedulable, block_size: int | tuple[int, ...],
                 data_format: str | None = None, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = self._rate("rate", rate)
        self.block_size = check_block_size(block_size, self._RANK)
        self.data_format = check_data_format(data_format)
        if isinstance(self.block_size, tuple):
            self._block = self.block_size
        else:
            self._block = (self.block_size,) * self._RANK
        self.supports_masking = True
        self._build_if_stateless()

    def _check_rank(self, shape):
        rank = self._RANK + 2
        if len(shape) != rank:
            if self.data_format == "channels_last":
                layout = ("batch", *self._AXES, "channels")
            else:
                layout = ("batch", "channels", *self._AXES)
            raise ValueError(
                f"`{type(self).__name__}` '{self.name}' expects inputs of rank "
                f"{rank}, ({', '.join(layout)}) for "
                f"data_format='{self.data_format}'. Received: inputs of rank "
                f"{len(shape)}, shape={tuple(shape)}"
            )

    def call(self, inputs, training=False):
        self._check_rank(inputs.shape)
        if not self._training(training):
            return inputs
        if isinstance(self.rate, float) and self.rate == 0.0:
            return inputs
        shape = list(ops.shape(inputs))
        channels_first = self.data_format == "channels_first"
        if channels_first:
            # The noise is i.i.d., so it is drawn and pooled channels-last
            # (TensorFlow pools only that layout) and the mask transposed.
            shape = [shape[0], *shape[2:], shape[1]]
        rate = read_once(self.rate)
        keep = keep_block_mask(shape, self._block, rate, self.seed_generator)
        if channels_first:
            keep = ops.transpose(keep, (0, self._RANK + 1, *range(1, self._RANK + 1)))
        scale = keep_scale(rate, inputs.dtype)
        return ops.where(keep, inputs * scale, ops.zeros((), dtype=inputs.dtype))

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self._hyperparameter_config("rate", self.rate),
            "block_size": self.block_size,
            "data_format": self.data_format,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DropBlock1D(_DropBlock):
    """DropBlock for sequences: drops runs of `block_size` consecutive steps.

    In training, run starts ("seeds") are drawn independently per sample and
    channel with probability `gamma = 1 - (1 - rate) ** (1 / block_size)` at
    each of the `steps + block_size - 1` places where a run overlapping the
    input can start; each seed zeroes its run of `block_size` steps (clipped
    to the input), and the kept units are scaled by `1 / (1 - rate)`. Every
    step lies in the runs of exactly `block_size` candidate seeds, so each
    unit is dropped with probability exactly `rate`, at the ends of the
    sequence too, and the expected output equals the input; at inference it
    is the identity. A `block_size` longer than the sequence acts as its
    length. With `block_size=1` it is dropout. A scheduled rate is moved
    along its schedule by `keras_regx.callbacks.RegularizationDriver`
    inside compiled `fit()` and logged as `"<layer name>/rate"`.

    Args:
        rate: float in [0, 1), the fraction of units dropped, or a schedule (a
            `keras_regx.schedules` object or a
            `keras.optimizers.schedules.LearningRateSchedule`) whose values lie
            in [0, 1). A rate whose scale `1 / (1 - rate)` overflows the
            compute dtype (above about 0.99998 under float16, or a scheduled
            rate that rounds to 1 in float32) drops every unit.
        block_size: positive int, the length of a dropped run.
        data_format: `"channels_last"` (inputs `(batch, steps, channels)`),
            `"channels_first"` (`(batch, channels, steps)`) or None for
            `keras.config.image_data_format()`.
        seed: optional int; two layers with the same seed draw the same masks.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a rank-3 tensor.
        training: bool, whether to drop.

    Example:
    ```python
    >>> layer = kr.layers.DropBlock1D(0.2, block_size=4, seed=0)
    >>> x = np.ones((4, 1000, 3), "float32")
    >>> bool((np.asarray(layer(x)) == x).all())      # identity at inference
    True
    >>> y = np.asarray(layer(x, training=True))
    >>> set(np.unique(y).tolist()) <= {0.0, 1 / (1 - 0.2)}   # kept: scaled by 1.25
    True
    >>> 0.16 < float((y == 0).mean()) < 0.24
    True
    ```

    Reference:
        Ghiasi, Lin & Le, "DropBlock: A regularization method for
        convolutional networks", NeurIPS 2018.
    """

    _RANK = 1
    _AXES = ("steps",)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DropBlock2D(_DropBlock):
    """DropBlock for images: drops square or rectangular blocks of feature maps.

    In training, block seeds are drawn independently per sample and channel
    with probability `gamma = 1 - (1 - rate) ** (1 / (bh * bw))` at each of
    the `(height + bh - 1) x (width + bw - 1)` places where a `bh x bw` block
    overlapping the input can have its top-left corner; each seed zeroes its
    block (clipped to the input), and the kept units are scaled by
    `1 / (1 - rate)`. Every position lies in the blocks of exactly `bh * bw`
    candidate seeds, so each unit is dropped with probability exactly `rate`
    everywhere (edges and non-square inputs included) and the expected
    output equals the input; at inference it is the identity. A block side
    longer than the input's is clipped to it. The paper's seed probability
    approximates this `gamma` and drops units near the edges less often.
    With `block_size=1` it is dropout.
    A scheduled rate (the paper ramps it up linearly) is moved along its
    schedule by `keras_regx.callbacks.RegularizationDriver` inside compiled
    `fit()` and logged as `"<layer name>/rate"`.

    Args:
        rate: float in [0, 1), the fraction of units dropped, or a schedule (a
            `keras_regx.schedules` object or a
            `keras.optimizers.schedules.LearningRateSchedule`) whose values lie
            in [0, 1). A rate whose scale `1 / (1 - rate)` overflows the
            compute dtype (above about 0.99998 under float16, or a scheduled
            rate that rounds to 1 in float32) drops every unit.
        block_size: positive int for square blocks, or a tuple of 2 positive
            ints `(bh, bw)`: the height and width of a block.
        data_format: `"channels_last"` (inputs `(batch, height, width,
            channels)`), `"channels_first"` (`(batch, channels, height,
            width)`) or None for `keras.config.image_data_format()`.
        seed: optional int; two layers with the same seed draw the same masks.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a rank-4 tensor.
        training: bool, whether to drop.

    Example:
    ```python
    >>> rate = kr.schedules.Linear(0.0, 0.1, end_step=5000)   # the paper's ramp
    >>> layer = kr.layers.DropBlock2D(rate, block_size=7, name="dropblock")
    >>> x = np.ones((2, 8, 8, 4), "float32")
    >>> bool((np.asarray(layer(x)) == x).all())      # identity at inference
    True
    >>> layer = kr.layers.DropBlock2D(0.2, block_size=(3, 5), seed=0)
    >>> y = np.asarray(layer(np.ones((64, 16, 16, 4), "float32"), training=True))
    >>> set(np.unique(y).tolist()) <= {0.0, 1 / (1 - 0.2)}
    True
    >>> 0.17 < float((y == 0).mean()) < 0.23
    True
    ```

    Reference:
        Ghiasi, Lin & Le, "DropBlock: A regularization method for
        convolutional networks", NeurIPS 2018.
    """

    _RANK = 2
    _AXES = ("height", "width")
