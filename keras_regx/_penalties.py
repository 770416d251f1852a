"""The elastic-net penalty `l1 * sum(abs(x)) + l2 * sum(square(x))`, and the
soft-threshold that proximal L1 applies after each update.

One function for L1, L2 and ElasticNet (`l1` or `l2` None skips that term).
On TensorFlow and JAX it is Keras' own expression, compiled with the train
step; where a backend has faster kernels (PyTorch, see
`keras_regx._backend.penalty_kernels`), those. Their step time against Keras'
`L1L2` is in `benchmarks/RESULTS.md`.
"""

import keras
from keras import ops

from keras_regx._backend import penalty_kernels


def _keras_penalty(x, l1, l2, gradient):
    if not gradient:
        x = ops.stop_gradient(ops.convert_to_tensor(x))
    if l1 is not None:
        l1_term = ops.cast(l1, dtype=x.dtype) * ops.sum(ops.absolute(x))
    if l2 is not None:
        l2_term = ops.cast(l2, dtype=x.dtype) * ops.sum(ops.square(x))
        return l2_term if l1 is None else l1_term + l2_term
    return l1_term


def _keras_soft_threshold(w, threshold):
    # With `relu` for the max (run eagerly, cheaper than a clip with tensor
    # bounds or `maximum(., 0.0)`).
    return ops.sign(w) * ops.relu(ops.absolute(w) - threshold)


def elastic_net(x, l1, l2, gradient=True):
    """`l1 * sum(abs(x)) + l2 * sum(square(x))`; a None strength skips its term.

    With `gradient=False` the value carries no gradient (a proximal penalty's
    value, counted in the loss while its step is taken after the update).
    """
    if l1 is None and l2 is None:
        return ops.zeros((), dtype=keras.backend.standardize_dtype(x.dtype))
    return _penalty(x, l1, l2, gradient)


def soft_threshold(w, threshold):
    """`sign(w) * max(abs(w) - threshold, 0)`; `threshold` a tensor of `w`'s dtype."""
    return _soft_threshold(w, threshold)


_penalty, _soft_threshold = penalty_kernels() or (_keras_penalty, _keras_soft_threshold)
