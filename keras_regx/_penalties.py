"""The elastic-net penalty `l1 * sum(abs(x)) + l2 * sum(square(x))`, and the
soft-threshold that proximal L1 applies after each update.

One function for L1, L2 and ElasticNet (`l1` or `l2` None skips that term).
On TensorFlow and JAX it is Keras' own expression, compiled with the train step.
PyTorch runs eagerly and records one autograd node per operation, so there the
penalty is a single `torch.autograd.Function` with as few passes over the
weight as we found: forward `sign(x)`, `dot(sign(x), x)` (= sum(abs(x))) and
`dot(x, x)` (= sum(square(x)); the values agree with Keras' to float32
rounding, the summation order differs); backward
`upstream * (l1 * sign(x) + 2 * l2 * x)` in two passes over the kept signs.
On the benchmark MLP (`benchmarks/ab_penalty.py`, 11 paired repetitions,
2026-11-27) ElasticNet added 9.1 ms to a 22.1 ms step, Keras' L1L2 16.4 ms,
and a "floor" regularizer whose penalty costs nothing but still sends a
gradient into every weight 6.8 ms: that much is Keras collecting the losses
and autograd adding a second gradient into each weight's, which no penalty
avoids. (The previous version, abs + sum and square + sum forward and three
backward passes, added 9.6 ms where L1L2 added 16.3 ms to a 20.7 ms step.)
"""

import keras
from keras import ops


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


def _torch_soft_threshold(w, threshold):
    # `w - clip(w, -t, t)` in three passes with torch's own kernels (keras.ops'
    # conversions around them cost more than the passes): 0.45-0.75x of the
    # sign * relu form in a timing of 24 weights of 256 x 256 on the CPU.
    import torch

    w = ops.convert_to_tensor(w)
    return w - torch.minimum(torch.maximum(w, -threshold), threshold)


def _make_torch_penalty():
    import torch

    def _l2_sum(x):
        # One BLAS reduction instead of square + sum (same value to float32
        # rounding: the summation order differs).
        flat = x.reshape(-1)
        return torch.dot(flat, flat)

    class ElasticNetPenalty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, l1, l2):
            if l1 is None:
                l1_term, signs = None, None
            else:
                # sum(abs(x)) as dot(sign(x), x): the signs are the L1 term's
                # gradient, kept for the backward.
                signs = torch.sign(x)
                l1_term = torch.dot(signs.reshape(-1), x.reshape(-1)).mul_(l1)
            if ctx is not None:
                ctx.save_for_backward(x)
                ctx.l1, ctx.l2, ctx.signs = l1, l2, signs
            if l2 is None:
                return l1_term
            if l1 is None:
                return _l2_sum(x).mul_(l2)
            if isinstance(l2, float):
                return l1_term.add_(_l2_sum(x), alpha=l2)
            return torch.addcmul(l1_term, _l2_sum(x), l2)

        @staticmethod
        def backward(ctx, upstream):
            # `upstream * (l1 * sign(x) + 2 * l2 * x)` in two elementwise
            # passes over the signs kept by the forward (taken, not copied: a
            # second backward of a retained graph recomputes them); the
            # strengths meet `upstream` in scalar operations.
            (x,) = ctx.saved_tensors
            l1, l2 = ctx.l1, ctx.l2
            if l1 is None:
                return x * (upstream * (2 * l2)), None, None
            grad = ctx.signs if ctx.signs is not None else torch.sign(x)
            ctx.signs = None
            grad.mul_(l1 * upstream)
            if l2 is not None:
                grad.addcmul_(x, upstream * (2 * l2))
            return grad, None, None

    def penalty(x, l1, l2, gradient):
        x = x.value if isinstance(x, keras.Variable) else ops.convert_to_tensor(x)
        l1 = _torch_strength(l1, x)
        l2 = _torch_strength(l2, x)
        if not (gradient and x.requires_grad and torch.is_grad_enabled()):
            # No gradient to record (a proximal penalty's value, evaluation):
            # the forward alone, on a tensor autograd does not follow.
            return ElasticNetPenalty.forward(None, x.detach(), l1, l2)
        return ElasticNetPenalty.apply(x, l1, l2)

    def _torch_strength(strength, x):
        if isinstance(strength, keras.Variable):
            return strength.value.to(x.dtype)
        if strength is None or isinstance(strength, float):
            return strength
        return float(strength)

    return penalty


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


if keras.backend.backend() == "torch":
    _penalty, _soft_threshold = _make_torch_penalty(), _torch_soft_threshold
else:
    _penalty, _soft_threshold = _keras_penalty, _keras_soft_threshold
