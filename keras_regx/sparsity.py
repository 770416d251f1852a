"""Sparsity of weights: the fraction of (near-)zero entries, units and filters.

An entry `w` counts as zero when `abs(w) <= threshold`, the comparison made in
the weight's own dtype (the threshold is cast to it, as NumPy does with a
Python float). NaN is not `<= threshold`, and neither is an infinity, so NaN
and inf weights count as nonzero: the figures report the weights as they are
and never raise on them.

Structured sparsity counts whole slices of a kernel whose entries are all
zero. The convention is the Keras kernel layout, units or filters last:

- `axis=-1`: output units of a `Dense` kernel `(inputs, units)`, filters of a
  convolution kernel `(..., in_channels, filters)`;
- `axis=0` of a `Dense` kernel: input rows, i.e. inputs the layer ignores.

The functions are written with `keras.ops` and take backend tensors or NumPy
arrays. `model_sparsity` measures a whole model in one compiled pass and
returns Python floats; `keras_regx.callbacks.SparsityMonitor` logs the same
figures during `fit()`.
"""

import numbers
from typing import Any

import keras
from keras import ops

from keras_regx._counting import cached_counter
from keras_regx._counting import count_dead_slices
from keras_regx._counting import count_zeros
from keras_regx._counting import size
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import check_bool
from keras_regx._validation import check_real
from keras_regx._validation import describe

__all__ = [
    "fraction_zero",
    "model_sparsity",
    "structured_count",
    "structured_fraction",
    "zero_count",
]


def _check_axis(axis, rank):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ArgumentTypeError(
            "Invalid value for argument `axis`: expected an integer. "
            f"Received: axis={describe(axis)}"
        )
    if not -rank <= axis < rank:
        raise ValueError(
            f"Invalid value for argument `axis`: expected an integer in "
            f"[{-rank}, {rank}) for a kernel of rank {rank}. Received: axis={axis}"
        )
    return int(axis) % rank


def zero_count(x: Any, threshold: float = 0.0) -> int:
    """Number of entries of `x` with `abs(x) <= threshold`, an int32 scalar.

    NaN and infinite entries are not counted (NaN is not `<= threshold`).

    Args:
        x: a tensor or NumPy array.
        threshold: float >= 0; entries with `abs(x) <= threshold` count.

    Example:
    ```python
    >>> x = np.array([[0.0, 0.5], [-0.0, -2.0]], "float32")
    >>> int(kr.sparsity.zero_count(x))
    2
    >>> int(kr.sparsity.zero_count(x, threshold=0.5))
    3
    ```
    """
    threshold = check_real("threshold", threshold, minimum=0.0)
    return count_zeros(ops.convert_to_tensor(x), threshold)


def fraction_zero(x: Any, threshold: float = 0.0) -> float:
    """Fraction of the entries of `x` with `abs(x) <= threshold`, a float32 scalar.

    `fraction = zero_count(x, threshold) / size(x)`; NaN for an empty `x`.

    Args:
        x: a tensor or NumPy array.
        threshold: float >= 0; entries with `abs(x) <= threshold` count.

    Example:
    ```python
    >>> x = np.array([0.0, 1e-4, 0.0, 2.0], "float32")
    >>> float(kr.sparsity.fraction_zero(x))
    0.5
    >>> float(kr.sparsity.fraction_zero(x, threshold=1e-3))
    0.75
    ```
    """
    x = ops.convert_to_tensor(x)
    count = zero_count(x, threshold)
    return ops.divide(ops.cast(count, "float32"), ops.cast(size(x), "float32"))


def structured_count(kernel: Any, threshold: float = 0.0, axis: int = -1) -> int:
    """Number of slices of `kernel` along `axis` whose entries are all zero.

    Slice `i` is `kernel[..., i, ...]` with `i` on `axis`; it counts when every
    one of its entries has `abs(w) <= threshold`. With Keras' kernel layout,
    `axis=-1` counts dead output units of a `Dense` kernel and dead filters of
    a convolution kernel, `axis=0` the unused inputs of a `Dense` kernel.

    Args:
        kernel: a tensor or NumPy array.
        threshold: float >= 0; entries with `abs(w) <= threshold` are zero.
        axis: int, the axis that indexes the slices.

    Example:
    ```python
    >>> kernel = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 2.0]], "float32")
    >>> int(kr.sparsity.structured_count(kernel))  # output unit 0 is dead
    1
    >>> int(kr.sparsity.structured_count(kernel, axis=0))  # input 1 is unused
    1
    ```
    """
    threshold = check_real("threshold", threshold, minimum=0.0)
    kernel = ops.convert_to_tensor(kernel)
    axis = _check_axis(axis, len(kernel.shape))
    return count_dead_slices(kernel, threshold, axis)


def structured_fraction(kernel: Any, threshold: float = 0.0, axis: int = -1) -> float:
    """Fraction of the slices of `kernel` along `axis` that are all zero.

    `structured_count(kernel, threshold, axis) / kernel.shape[axis]`, a float32
    scalar: with `axis=-1` the fraction of dead units (`Dense`) or filters
    (convolutions).

    Args:
        kernel: a tensor or NumPy array.
        threshold: float >= 0; entries with `abs(w) <= threshold` are zero.
        axis: int, the axis that indexes the slices.

    Example:
    ```python
    >>> kernel = np.zeros((3, 3, 8, 4), "float32")  # a Conv2D kernel, 4 filters
    >>> kernel[..., 1] = 1.0
    >>> float(kr.sparsity.structured_fraction(kernel))
    0.75
    ```
    """
    kernel = ops.convert_to_tensor(kernel)
    count = structured_count(kernel, threshold, axis)
    slices = int(kernel.shape[_check_axis(axis, len(kernel.shape))])
    return ops.divide(ops.cast(count, "float32"), ops.cast(slices, "float32"))


def model_sparsity(model: keras.layers.Layer, threshold: float = 0.0, per_layer: bool = True,
                   include_bias: bool = False, structured: bool = False) -> dict[str, float]:
    """Sparsity of a model's kernels, as a dict of Python floats.

    Counts the entries with `abs(w) <= threshold` over every kernel of the
    model (a layer's own weights named `kernel` or `*_kernel`, in nested
    layers and sub-models too; a weight shared by several layers counts once)
    and returns:

    - `"sparsity"`: zero kernel entries / all kernel entries (biases, named
      `bias` or `*_bias`, included in both when `include_bias=True`);
    - with `per_layer=True`, `"sparsity/<layer name>"` for every layer with a
      kernel (a repeated name gets a suffix `_1`, `_2`, ...);
    - with `structured=True` and `per_layer=True`, `"sparsity/<layer>/units"`:
      the fraction of all-zero slices along the last kernel axis (output
      units of `Dense`, filters of convolutions), and for 2-D kernels
      (`Dense`) `"sparsity/<layer>/inputs"`: the fraction of all-zero input
      rows.

    NaN and inf weights count as nonzero; a model without kernels gives NaN.
    Every figure comes from one compiled pass over all the weights and one
    transfer of a vector of counts to the host, so each equals what NumPy
    counts on the same weights. The pass is compiled on the first call for a
    model and these arguments and reused by later calls, which read the
    weights' current values; it is rebuilt when the model's weights change
    (a layer added, a model rebuilt). The cache does not keep the model
    alive. `keras_regx.callbacks.SparsityMonitor` logs the same figures
    during `fit()`.

    Args:
        model: a built Keras model or layer.
        threshold: float >= 0; entries with `abs(w) <= threshold` are zero.
        per_layer: bool, whether to add one figure per layer with a kernel.
        include_bias: bool, whether biases count in the global figure.
        structured: bool, whether to add the per-layer unit/input figures.

    Example:
    ```python
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="hidden")])
    >>> kernel = np.array([[0, 1], [0, 0], [0, 3], [0, 4]], "float32")
    >>> model.get_layer("hidden").set_weights([kernel, np.ones(2, "float32")])
    >>> kr.sparsity.model_sparsity(model, structured=True)
    {'sparsity': 0.625, 'sparsity/hidden': 0.625, 'sparsity/hidden/units': 0.5, 'sparsity/hidden/inputs': 0.25}
    >>> kr.sparsity.model_sparsity(model, per_layer=False, include_bias=True)
    {'sparsity': 0.5}
    ```
    """
    if not isinstance(model, keras.layers.Layer):  # keras.Model is a Layer
        raise ArgumentTypeError(
            "Invalid value for argument `model`: expected a keras.Model or a "
            f"keras.layers.Layer. Received: model={describe(model)}"
        )
    threshold = check_real("threshold", threshold, minimum=0.0)
    for name, value in (("per_layer", per_layer), ("include_bias", include_bias),
                        ("structured", structured)):
        check_bool(name, value)
    return cached_counter(model, threshold, per_layer, include_bias, structured)()
