"""Counting zeros: the counting ops, and one compiled pass that measures a model.

`keras_regx.sparsity` (public functions, `model_sparsity`) and
`keras_regx.callbacks.SparsityMonitor` measure through `Counter`: one compiled
pass maps the model's weight values to one int32 vector of counts (and,
optionally, the sum of the weight penalties), so one host transfer gives every
figure. `cached_counter` keeps the passes `model_sparsity` compiled.
"""

import math
import weakref

import keras
from keras import ops

from keras_regx._backend import compiled
from keras_regx._model_walk import is_bias
from keras_regx._model_walk import is_kernel
from keras_regx._model_walk import layers
from keras_regx._model_walk import own_variables
from keras_regx._model_walk import penalized


def is_zero(x, threshold):
    """Boolean mask of the entries of `x` with `abs(x) <= threshold`."""
    if threshold == 0.0:
        return ops.equal(x, ops.zeros((), x.dtype))
    return ops.less_equal(ops.abs(x), ops.cast(threshold, x.dtype))


def size(x):
    return math.prod(int(d) for d in x.shape)


def count_zeros(x, threshold):
    """The number of entries of `x` with `abs(x) <= threshold`, int32."""
    # Summing the mask itself spares PyTorch an int32 copy of it.
    return ops.cast(ops.sum(is_zero(x, threshold)), "int32")


def count_dead_slices(x, threshold, axis):
    """The number of slices along `axis` of `x` whose entries are all zero, int32."""
    others = tuple(a for a in range(len(x.shape)) if a != axis)
    dead = is_zero(x, threshold)
    if others:
        dead = ops.all(dead, axis=others)
    return ops.cast(ops.sum(dead), "int32")


def signature(model):
    """The layers with kernels or biases, in walk order, as `(name, ids of
    those variables)` pairs.

    A counter's figures depend only on this (and on the variables' fixed
    shapes), so an equal signature means the counter still fits the model.
    A counter holds the variables it counts, so their ids cannot be reused
    by new variables meanwhile; a reused id of a bias it ignores is harmless.
    """
    found = []
    for layer in layers(model):
        ids = tuple(id(v) for v in own_variables(layer) if is_kernel(v) or is_bias(v))
        if ids:
            found.append((layer.name, ids))
    return tuple(found)


def _ratio(count, total):
    return count / total if total else float("nan")


def _weights(model, include_bias):
    """The kernels to count, once each (a shared or tied weight counts once),
    grouped by layer, then the biases.

    Returns `(variables, [(layer, [indices of its kernels])])`.
    """
    seen, variables, biases, by_layer = set(), [], [], []
    for layer in layers(model):
        kernels = []
        for v in own_variables(layer):
            if id(v) in seen:
                continue
            if is_kernel(v):
                seen.add(id(v))
                kernels.append(len(variables))
                variables.append(v)
            elif include_bias and is_bias(v):
                seen.add(id(v))
                biases.append(v)
        if kernels:
            by_layer.append((layer, kernels))
    return variables + biases, by_layer


def _unique_key(name, taken):
    key, k = f"sparsity/{name}", 1
    while key in taken:
        key = f"sparsity/{name}_{k}"
        k += 1
    taken.add(key)
    return key


def _slices_of(variables, kernels, key, slices):
    """The structured figures of one layer: `[(key, [indices into slices])]`;
    appends `(kernel index, axis, number of slices)` to `slices`."""
    specs = []
    for kind, axis in (("units", -1), ("inputs", 0)):
        found = []
        for i in kernels:
            rank = len(variables[i].shape)
            if rank < 2 or (kind == "inputs" and rank != 2):
                continue
            found.append(len(slices))
            slices.append((i, axis % rank, int(variables[i].shape[axis])))
        if found:
            specs.append((f"{key}/{kind}", found))
    return specs


def _measure_pass(threshold, slices, penalized_pairs, strengths):
    """The function of one pass: (weight values, penalized weight values,
    strength values) -> (counts, penalty sum)."""
    slice_axes = [(i, axis) for i, axis, _ in slices]

    def measure(values, weights, strength_values):
        out = [count_zeros(x, threshold) for x in values]
        out += [count_dead_slices(values[i], threshold, axis) for i, axis in slice_axes]
        counts = ops.stack(out) if out else ops.zeros((0,), "int32")
        # Strength variables read as the values passed in: a compiled pass
        # (jax.jit) would otherwise keep the values it was traced with.
        total = ops.zeros((), "float32")
        with keras.StatelessScope(state_mapping=list(zip(strengths, strength_values))):
            for (_, regularizer), w in zip(penalized_pairs, weights):
                total = total + ops.cast(regularizer(w), "float32")
        return counts, total

    return measure


class Counter:
    """Measures a model's sparsity with one compiled pass over its weights.

    The pass maps the list of weight values to one int32 vector of counts
    (zero entries per weight, then dead slices per structured figure); the
    sizes are static, so one host transfer of that vector gives every figure.
    With `penalty=True` the same pass also sums the weight regularization
    penalties (see `keras_regx._model_walk.penalized`).
    """

    def __init__(self, model, threshold=0.0, per_layer=True, include_bias=False,
                 structured=False, penalty=False):
        self.threshold = threshold
        self.include_bias = include_bias
        self.signature = signature(model)
        self.variables, by_layer = _weights(model, include_bias)  # kernels, then biases
        self.layers = []  # (key, [kernel indices], [(key, [slice indices])])
        self.slices = []  # (kernel index, axis, number of slices)
        if per_layer:
            taken = set()
            for layer, kernels in by_layer:
                key = _unique_key(layer.name, taken)
                specs = (_slices_of(self.variables, kernels, key, self.slices)
                         if structured else [])
                self.layers.append((key, kernels, specs))
        self.sizes = [size(v) for v in self.variables]
        self.penalty = penalty
        self.penalized, self.strengths = penalized(model) if penalty else ([], [])
        measure = _measure_pass(threshold, self.slices, self.penalized, self.strengths)
        self._measure = compiled(measure) if self.variables or self.penalized else None

    def matches(self, model):
        """Whether `model`'s weights are still the ones this counter measures."""
        if signature(model) != self.signature:
            return False
        if not self.penalty:
            return True
        pairs = [(id(v), id(r)) for v, r in penalized(model)[0]]
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


# The counters `model_sparsity` built, per model: {arguments: Counter}, the
# most recently used last. Weak keys, so the cache never keeps a model alive;
# a counter holds the model's variables and its compiled pass, not the model.
_COUNTERS = weakref.WeakKeyDictionary()
# Counters kept per model: a sweep over many thresholds compiles once per
# threshold and keeps only the latest few.
MAX_COUNTERS = 8


def cached_counter(model, threshold, per_layer, include_bias, structured):
    """The counter for `model` and these arguments, built on first use and
    rebuilt when the model's weights are no longer the same variables (a
    layer added, a model rebuilt). The threshold is a constant of the
    compiled pass, so each threshold has its own counter."""
    counters = _COUNTERS.get(model)
    if counters is None:
        counters = _COUNTERS[model] = {}
    elif counters and next(iter(counters.values())).signature != signature(model):
        counters.clear()  # all share one signature: all stale
    key = (threshold, per_layer, include_bias, structured)
    counter = counters.pop(key, None)
    if counter is None:
        counter = Counter(model, threshold, per_layer, include_bias, structured)
        while len(counters) >= MAX_COUNTERS:
            del counters[next(iter(counters))]
    counters[key] = counter
    return counter
