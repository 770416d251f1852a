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

import math
import numbers
import weakref
from typing import Any

import keras
from keras import ops

from keras_regx.schedules import ArgumentTypeError
from keras_regx.schedules import check_bool
from keras_regx.schedules import check_real
from keras_regx.schedules import describe

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


def _is_zero(x, threshold):
    """Boolean mask of the entries of `x` with `abs(x) <= threshold`."""
    if threshold == 0.0:
        return ops.equal(x, ops.zeros((), x.dtype))
    return ops.less_equal(ops.abs(x), ops.cast(threshold, x.dtype))


def _size(x):
    return math.prod(int(d) for d in x.shape)


def _zero_count(x, threshold):
    # Summing the mask itself spares PyTorch an int32 copy of it.
    return ops.cast(ops.sum(_is_zero(x, threshold)), "int32")


def _structured_count(x, threshold, axis):
    others = tuple(a for a in range(len(x.shape)) if a != axis)
    dead = _is_zero(x, threshold)
    if others:
        dead = ops.all(dead, axis=others)
    return ops.cast(ops.sum(dead), "int32")


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
    return _zero_count(ops.convert_to_tensor(x), threshold)


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
    return ops.divide(ops.cast(count, "float32"), ops.cast(_size(x), "float32"))


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
    return _structured_count(kernel, threshold, axis)


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


def _compile(fn):
    """`fn` compiled for the backend: the one place that switches on it.

    tf.function on TensorFlow, jax.jit on JAX; on PyTorch the eager ops run
    without autograd recording.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "torch":
        import torch

        def run(*args):
            with torch.no_grad():
                return fn(*args)

        return run
    return fn


def _is_kernel(variable):
    name = variable.name
    return name == "kernel" or name.endswith("_kernel")


def _is_bias(variable):
    name = variable.name
    return name == "bias" or name.endswith("_bias")


def _own_variables(layer):
    # A layer's `weights` include its sublayers'; these are its own.
    return list(getattr(layer, "_trainable_variables", [])) + list(
        getattr(layer, "_non_trainable_variables", [])
    )


def _layers(model):
    """`model` and its layers, nested ones included, once each, depth first
    in the order they were added (Keras' `_flatten_layers` reverses siblings)."""
    found, seen, stack = [], set(), [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        found.append(layer)
        stack.extend(reversed(getattr(layer, "_layers", [])))
    return found


def _signature(model):
    """The layers with kernels or biases, in walk order, as `(name, ids of
    those variables)` pairs.

    A counter's figures depend only on this (and on the variables' fixed
    shapes), so an equal signature means the counter still fits the model.
    A counter holds the variables it counts, so their ids cannot be reused
    by new variables meanwhile; a reused id of a bias it ignores is harmless.
    """
    signature = []
    for layer in _layers(model):
        ids = tuple(
            id(v) for v in _own_variables(layer) if _is_kernel(v) or _is_bias(v)
        )
        if ids:
            signature.append((layer.name, ids))
    return tuple(signature)


def _ratio(count, total):
    return count / total if total else float("nan")


class _Counter:
    """Measures a model's sparsity with one compiled pass over its weights.

    The pass maps the list of weight values to one int32 vector of counts
    (zero entries per weight, then dead slices per structured figure); the
    sizes are static, so one host transfer of that vector gives every figure.
    With `penalty=True` the same pass also sums the weight regularization
    penalties (see `_penalized`).
    """

    def __init__(self, model, threshold=0.0, per_layer=True, include_bias=False,
                 structured=False, penalty=False):
        self.threshold = threshold
        self.include_bias = include_bias
        self.signature = _signature(model)
        seen = set()
        names = set()
        self.variables = []  # kernels, then biases
        self.layers = []  # (key, [kernel indices], [(key, [slice indices])])
        self.slices = []  # (kernel index, axis, number of slices)
        biases = []
        for layer in _layers(model):
            kernels = []
            for v in _own_variables(layer):
                if id(v) in seen:
                    continue  # a shared or tied weight counts once
                if _is_kernel(v):
                    seen.add(id(v))
                    kernels.append(len(self.variables))
                    self.variables.append(v)
                elif include_bias and _is_bias(v):
                    seen.add(id(v))
                    biases.append(v)
            if not kernels or not per_layer:
                continue
            key = f"sparsity/{layer.name}"
            k = 1
            while key in names:
                key = f"sparsity/{layer.name}_{k}"
                k += 1
            names.add(key)
            specs = []
            if structured:
                for kind, axis in (("units", -1), ("inputs", 0)):
                    found = []
                    for i in kernels:
                        rank = len(self.variables[i].shape)
                        if rank < 2 or (kind == "inputs" and rank != 2):
                            continue
                        found.append(len(self.slices))
                        self.slices.append(
                            (i, axis % rank, int(self.variables[i].shape[axis]))
                        )
                    if found:
                        specs.append((f"{key}/{kind}", found))
            self.layers.append((key, kernels, specs))
        self.variables += biases
        self.sizes = [_size(v) for v in self.variables]
        slices = [(i, axis) for i, axis, _ in self.slices]
        self.penalty = penalty
        self.penalized, self.strengths = _penalized(model) if penalty else ([], [])
        penalized, strengths = self.penalized, self.strengths

        def measure(values, weights, strength_values):
            out = [_zero_count(x, threshold) for x in values]
            out += [_structured_count(values[i], threshold, axis) for i, axis in slices]
            counts = ops.stack(out) if out else ops.zeros((0,), "int32")
            # Strength variables read as the values passed in: a compiled pass
            # (jax.jit) would otherwise keep the values it was traced with.
            total = ops.zeros((), "float32")
            with keras.StatelessScope(state_mapping=list(zip(strengths, strength_values))):
                for (_, regularizer), w in zip(penalized, weights):
                    total = total + ops.cast(regularizer(w), "float32")
            return counts, total

        self._measure = _compile(measure) if self.variables or penalized else None

    def matches(self, model):
        """Whether `model`'s weights are still the ones this counter measures."""
        if _signature(model) != self.signature:
            return False
        if not self.penalty:
            return True
        pairs = [(id(v), id(r)) for v, r in _penalized(model)[0]]
        return pairs == [(id(v), id(r)) for v, r in self.penalized]

    def __call__(self):
        """Returns the figures as a dict of Python floats."""
        counts, total = [], None
        if self._measure is not None:
            counts, total = self._measure(
                [v.value for v in self.variables],
                [v.value for v, _ in self.penalized],
                [v.value for v in self.strengths],
            )
            counts = ops.convert_to_numpy(counts).tolist()
        zeros = counts[: len(self.variables)]
        dead = counts[len(self.variables):]
        result = {"sparsity": _ratio(sum(zeros), sum(self.sizes))}
        if self.penalized:
            result["regularization_loss"] = float(ops.convert_to_numpy(total))
        for key, kernels, specs in self.layers:
            result[key] = _ratio(
                sum(zeros[i] for i in kernels), sum(self.sizes[i] for i in kernels)
            )
            for skey, found in specs:
                result[skey] = _ratio(
                    sum(dead[j] for j in found), sum(self.slices[j][2] for j in found)
                )
        return result


def _penalized(model):
    """(weight, regularizer) pairs whose penalties Keras adds to the loss, and
    the variables of those regularizers (keras_regx strengths), once each.

    Keras adds `variable.regularizer(variable)` for every trainable weight of
    every layer; activity regularizers and `add_loss` terms depend on the
    inputs and are not among them.
    """
    pairs, strengths, seen = [], [], set()
    for variable in model.trainable_weights:
        regularizer = getattr(variable, "regularizer", None)
        if regularizer is None or id(variable) in seen:
            continue
        seen.add(id(variable))
        pairs.append((variable, regularizer))
        if isinstance(regularizer, keras.layers.Layer):
            for strength in regularizer.weights:
                if id(strength) not in seen:
                    seen.add(id(strength))
                    strengths.append(strength)
    return pairs, strengths


# The counters `model_sparsity` built, per model: {arguments: _Counter}, the
# most recently used last. Weak keys, so the cache never keeps a model alive;
# a counter holds the model's variables and its compiled pass, not the model.
_COUNTERS = weakref.WeakKeyDictionary()
# Counters kept per model: a sweep over many thresholds compiles once per
# threshold and keeps only the latest few.
_MAX_COUNTERS = 8


def _cached_counter(model, threshold, per_layer, include_bias, structured):
    """The counter for `model` and these arguments, built on first use and
    rebuilt when the model's weights are no longer the same variables (a
    layer added, a model rebuilt). The threshold is a constant of the
    compiled pass, so each threshold has its own counter."""
    counters = _COUNTERS.get(model)
    if counters is None:
        counters = _COUNTERS[model] = {}
    elif counters and next(iter(counters.values())).signature != _signature(model):
        counters.clear()  # all share one signature: all stale
    key = (threshold, per_layer, include_bias, structured)
    counter = counters.pop(key, None)
    if counter is None:
        counter = _Counter(model, threshold, per_layer, include_bias, structured)
        while len(counters) >= _MAX_COUNTERS:
            del counters[next(iter(counters))]
    counters[key] = counter
    return counter


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
    return _cached_counter(model, threshold, per_layer, include_bias, structured)()
