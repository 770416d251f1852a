"""Magnitude pruning masks, written with `keras.ops` (compiled with the step).

Each function returns a mask of the weight's shape and dtype: 1 where the
weight is kept, 0 where it is pruned. The counts follow TF Model
Optimization's `pruning_impl`: of `n` entries (or blocks, or units),
`keep = max(round(n * (1 - sparsity)), 1)` are kept, those whose magnitude is
at least the `keep`-th largest (ties at the threshold are all kept).
"""

import math

import numpy as np
from keras import ops


def keep_count(n, sparsity):
    """`max(round(n * (1 - sparsity)), 1)` as an int32 tensor (float32 math,
    rounding half to even, as TensorFlow's `round`)."""
    kept = ops.round(ops.cast(n, "float32") * (1.0 - ops.cast(sparsity, "float32")))
    return ops.maximum(ops.cast(kept, "int32"), 1)


def _threshold(scores, sparsity):
    """The `keep`-th largest of the non-negative `scores`.

    Found by bisection on the float32 bit patterns, which order non-negative
    floats as their values: 32 counting passes over the scores instead of a
    sort (a sort of every kernel made a mask update cost tens of steps).
    """
    flat = ops.reshape(ops.cast(scores, "float32"), (-1,))
    keep = keep_count(int(flat.shape[0]), sparsity)
    bits = ops.view(flat, "int32")
    # The largest t with count(bits >= t) >= keep: the keep-th largest pattern.
    low = ops.convert_to_tensor(0, "int32")
    high = ops.convert_to_tensor(2**31 - 1, "int32")
    for _ in range(32):
        gap = high - low
        middle = low + gap // 2 + gap % 2
        enough = ops.greater_equal(
            ops.sum(ops.cast(ops.greater_equal(bits, middle), "int32")), keep)
        low = ops.where(enough, middle, low)
        high = ops.where(enough, high, middle - 1)
    return ops.view(low, "float32")


def _kept(scores, threshold, dtype):
    return ops.cast(ops.greater_equal(scores, threshold), dtype)


def weight_mask(w, sparsity):
    """Keeps the largest `|w|` entries of `w`."""
    scores = ops.abs(w)
    return _kept(scores, _threshold(scores, sparsity), w.dtype)


def global_masks(weights, sparsity):
    """One magnitude threshold over all of `weights` (a list): the masks that
    keep the largest entries of all of them together."""
    scores = [ops.abs(w) for w in weights]
    flat = ops.concatenate([ops.reshape(s, (-1,)) for s in scores], axis=0)
    threshold = _threshold(flat, sparsity)
    return [_kept(s, ops.cast(threshold, s.dtype), w.dtype) for s, w in zip(scores, weights)]


def unit_mask(w, sparsity):
    """Keeps the output units (last axis: Dense units, convolution filters)
    with the largest L2 norms; a pruned unit is zero in every entry."""
    axes = tuple(range(len(w.shape) - 1))
    norms = ops.sqrt(ops.sum(ops.square(ops.cast(w, "float32")), axis=axes))
    return ops.broadcast_to(_kept(norms, _threshold(norms, sparsity), w.dtype), w.shape)


def as_matrix_shape(shape):
    """The 2-D view of a kernel of `shape`: (all but the last axis, last axis)."""
    return (math.prod(shape[:-1]), shape[-1])


def block_mask(w, sparsity, block):
    """Keeps the `(r, c)` blocks of the kernel's 2-D view with the largest mean
    `|w|` (blocks at the edges hold fewer entries; their mean is over those,
    as TF Model Optimization's 'SAME' average pooling)."""
    rows, cols = as_matrix_shape(tuple(w.shape))
    r, c = block
    grid = (-(-rows // r), -(-cols // c))
    padded = (grid[0] * r, grid[1] * c)
    scores = ops.abs(ops.cast(ops.reshape(w, (rows, cols)), "float32"))
    scores = ops.pad(scores, ((0, padded[0] - rows), (0, padded[1] - cols)))
    sums = ops.sum(ops.reshape(scores, (grid[0], r, grid[1], c)), axis=(1, 3))
    counts = ops.convert_to_tensor(_block_counts(rows, cols, r, c), "float32")
    means = sums / counts
    kept = _kept(means, _threshold(means, sparsity), w.dtype)
    full = ops.repeat(ops.repeat(kept, r, axis=0), c, axis=1)[:rows, :cols]
    return ops.reshape(full, w.shape)


def _block_counts(rows, cols, r, c):
    """How many kernel entries each block holds (fewer at the edges)."""
    grid_rows = [min(r, rows - i * r) for i in range(-(-rows // r))]
    grid_cols = [min(c, cols - j * c) for j in range(-(-cols // c))]
    return [[a * b for b in grid_cols] for a in grid_rows]


def n_m_mask(w, n, m):
    """Zeroes the `n` smallest `|w|` of every group of `m` consecutive entries
    along the input axis (axis -2 of a kernel: Dense inputs, convolution
    input channels): exactly `n` per group, ties going to the earlier entry."""
    shape = tuple(w.shape)
    axis = len(shape) - 2
    moved = ops.moveaxis(ops.abs(w), axis, -1)  # (..., out, in)
    grouped = ops.reshape(moved, moved.shape[:-1] + (shape[axis] // m, m))
    # Each entry's rank in its group: how many are smaller, or equal and
    # earlier (m * m comparisons per group: cheaper than sorting small groups).
    rank = 0
    for j in range(m):
        other = grouped[..., j:j + 1]
        rank = rank + ops.cast(ops.less(other, grouped), "int32")
        earlier = ops.convert_to_tensor(np.arange(m) > j)
        rank = rank + ops.cast(ops.logical_and(ops.equal(other, grouped), earlier), "int32")
    kept = ops.cast(ops.greater_equal(rank, n), w.dtype)
    return ops.moveaxis(ops.reshape(kept, moved.shape), -1, axis)
