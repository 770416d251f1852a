"""Magnitude pruning masks, written with `keras.ops` (compiled with the step).

`masks` returns, for each weight, a mask of its shape and dtype: 1 where the
weight is kept, 0 where it is pruned. The counts follow TF Model
Optimization's `pruning_impl`: of `n` entries (or blocks, or units),
`keep = max(round(n * (1 - sparsity)), 1)` are kept, those whose magnitude is
at least the `keep`-th largest (ties at the threshold are all kept).
"""

import math
import numbers

import numpy as np
from keras import ops

from keras_regx._backend import fused


def masks(groups, sparsity):
    """The masks of `groups`, a list of `(weights, granularity)` where the
    weights of one group share one magnitude threshold (one weight, or every
    weight of a global scope); a list with one mask per weight, in order.

    `granularity` is `"weight"`, `"unit"`, `("block", (r, c))` or
    `("n:m", (n, m))` (which has no threshold and ignores `sparsity`).
    `sparsity` is a scalar tensor, or a Python number where the host knows it
    (eager steps), which finds the thresholds by partial sorts.
    """
    scored = [_scores(weights, granularity) for weights, granularity in groups]
    found = thresholds([scores for scores, _ in scored if scores is not None], sparsity)
    result = []
    for scores, to_masks in scored:
        result += to_masks(None if scores is None else found.pop(0))
    return result


def _scores(weights, granularity):
    """`(scores, to_masks)`: the group's flat float32 scores (None for N:M)
    and the function from their threshold to the group's masks."""
    if granularity == "weight":  # one weight, or several ranked together (global scope)
        magnitudes = [ops.abs(ops.cast(w, "float32")) for w in weights]
        flat = [ops.reshape(m, (-1,)) for m in magnitudes]
        scores = flat[0] if len(flat) == 1 else ops.concatenate(flat, axis=0)
        return scores, lambda t: [_kept(m, t, w.dtype) for m, w in zip(magnitudes, weights)]
    w = weights[0]  # other granularities: one weight per threshold
    if granularity == "unit":
        return _unit_scores(w)
    kind, shape = granularity
    if kind == "block":
        return _block_scores(w, shape)
    return None, lambda _: [_n_m_mask(w, *shape)]


def keep_count(n, sparsity):
    """`max(round(n * (1 - sparsity)), 1)`: how many of `n` entries a mask
    keeps (float32 math, rounding half to even, as TensorFlow's `round`); an
    int32 tensor, or a Python int for a Python `sparsity`."""
    if isinstance(sparsity, numbers.Real):
        kept = np.round(np.float32(n) * (np.float32(1.0) - np.float32(sparsity)))
        return max(int(kept), 1)
    kept = ops.round(ops.cast(n, "float32") * (1.0 - ops.cast(sparsity, "float32")))
    return ops.maximum(ops.cast(kept, "int32"), 1)


def thresholds(rows, sparsity):
    """The `keep_count`-th largest of each of `rows` (flat non-negative
    float32 scores), as a list of scalars.

    Rows of one length are stacked and searched together (one pass over all
    of them instead of one per row: a 24-kernel model has 24 times fewer
    operations). With a Python `sparsity` the count is a Python int and a
    partial sort (`top_k`) finds the values; with a tensor, a bisection on
    the float32 bit patterns, which order non-negative floats as their
    values: 32 counting passes instead of a sort (sorting every kernel made a
    mask update cost tens of steps under XLA).
    """
    by_length = {}
    for index, row in enumerate(rows):
        by_length.setdefault(int(row.shape[0]), []).append(index)
    found = [None] * len(rows)
    for length, indices in by_length.items():
        stacked = ops.stack([rows[i] for i in indices], axis=0)
        keep = keep_count(length, sparsity)
        if isinstance(keep, int):
            values = _partial_sort_threshold(stacked, keep)
        else:
            values = _fused_bisection(stacked, keep)
        for position, index in enumerate(indices):
            found[index] = values[position]
    return found


def _partial_sort_threshold(scores, keep):
    """Row-wise `keep`-th largest of `scores` (k, n), `keep` a Python int:
    the smaller of the two partial sorts around it."""
    n = int(scores.shape[-1])
    if keep <= n - keep + 1:
        return ops.min(ops.top_k(scores, keep, sorted=False)[0], axis=-1)
    # The keep-th largest is the (n - keep + 1)-th smallest.
    return -ops.min(ops.top_k(-scores, n - keep + 1, sorted=False)[0], axis=-1)


def _bisection_threshold(scores, keep):
    """Row-wise `keep`-th largest of `scores` (k, n), `keep` an int32 tensor:
    the largest bit pattern t with count(bits >= t) >= keep."""
    bits = ops.view(scores, "int32")
    rows = (int(scores.shape[0]),)
    low = ops.zeros(rows, "int32")
    high = ops.full(rows, 2**31 - 1, "int32")
    for _ in range(32):
        gap = high - low
        middle = low + gap // 2 + gap % 2
        count = ops.sum(ops.cast(ops.greater_equal(bits, middle[:, None]), "int32"), axis=-1)
        enough = ops.greater_equal(count, keep)
        low = ops.where(enough, middle, low)
        high = ops.where(enough, high, middle - 1)
    return ops.view(low, "float32")


_fused_bisection = fused(_bisection_threshold)


def _kept(scores, threshold, dtype):
    return ops.cast(ops.greater_equal(scores, threshold), dtype)


def _unit_scores(w):
    """Output units (last axis: Dense units, convolution filters) ranked by
    their L2 norms; a pruned unit is zero in every entry."""
    axes = tuple(range(len(w.shape) - 1))
    norms = ops.sqrt(ops.sum(ops.square(ops.cast(w, "float32")), axis=axes))
    return norms, lambda t: [ops.broadcast_to(_kept(norms, t, w.dtype), w.shape)]


def as_matrix_shape(shape):
    """The 2-D view of a kernel of `shape`: (all but the last axis, last axis)."""
    return (math.prod(shape[:-1]), shape[-1])


def _block_scores(w, block):
    """The `(r, c)` blocks of the kernel's 2-D view ranked by mean `|w|`
    (blocks at the edges hold fewer entries; their mean is over those, as TF
    Model Optimization's 'SAME' average pooling)."""
    rows, cols = as_matrix_shape(tuple(w.shape))
    r, c = block
    grid = (-(-rows // r), -(-cols // c))
    padded = (grid[0] * r, grid[1] * c)
    scores = ops.abs(ops.cast(ops.reshape(w, (rows, cols)), "float32"))
    scores = ops.pad(scores, ((0, padded[0] - rows), (0, padded[1] - cols)))
    sums = ops.sum(ops.reshape(scores, (grid[0], r, grid[1], c)), axis=(1, 3))
    counts = ops.convert_to_tensor(_block_counts(rows, cols, r, c), "float32")
    means = ops.reshape(sums / counts, (-1,))

    def to_masks(t):
        kept = ops.reshape(_kept(means, t, w.dtype), grid)
        full = ops.repeat(ops.repeat(kept, r, axis=0), c, axis=1)[:rows, :cols]
        return [ops.reshape(full, w.shape)]

    return means, to_masks


def _block_counts(rows, cols, r, c):
    """How many kernel entries each block holds (fewer at the edges)."""
    grid_rows = [min(r, rows - i * r) for i in range(-(-rows // r))]
    grid_cols = [min(c, cols - j * c) for j in range(-(-cols // c))]
    return [[a * b for b in grid_cols] for a in grid_rows]


def _n_m_mask(w, n, m):
    """Zeroes the `n` smallest `|w|` of every group of `m` consecutive entries
    along the input axis (axis -2 of a kernel: Dense inputs, convolution
    input channels): exactly `n` per group, ties going to the earlier entry.

    The groups are a reshape of the kernel (no transpose: under XLA a mask in
    another layout than its kernel is copied back at every step)."""
    shape = tuple(w.shape)
    grouped = ops.reshape(ops.abs(w), shape[:-2] + (shape[-2] // m, m, shape[-1]))
    # Each entry's rank in its group: how many are smaller, or equal and
    # earlier (m * m comparisons per group: cheaper than sorting small groups).
    rank = 0
    for j in range(m):
        other = grouped[..., j:j + 1, :]
        rank = rank + ops.cast(ops.less(other, grouped), "int32")
        earlier = ops.convert_to_tensor((np.arange(m) > j)[:, None])
        rank = rank + ops.cast(ops.logical_and(ops.equal(other, grouped), earlier), "int32")
    return ops.reshape(ops.cast(ops.greater_equal(rank, n), w.dtype), shape)
