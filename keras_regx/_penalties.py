"""The elastic-net penalty `l1 * sum(abs(x)) + l2 * sum(square(x))`.

One function for L1, L2 and ElasticNet (`l1` or `l2` None skips that term).
On TensorFlow and JAX it is Keras' own expression, compiled with the train step.
PyTorch runs eagerly and records one autograd node per operation, so there the
penalty is a single `torch.autograd.Function`: the same forward kernels (same
value), and a backward of three kernels, `g * (l1 * sign(x) + 2 * l2 * x)`.
On the benchmark MLP, ElasticNet added 51% to a PyTorch step where Keras'
L1L2 added 76% (benchmarks/RESULTS.md, 2026-11-27; earlier runs: 39% / 79%,
30% / 61%).
"""

import keras
from keras import ops


def _keras_penalty(x, l1, l2):
    if l1 is not None:
        l1_term = ops.cast(l1, dtype=x.dtype) * ops.sum(ops.absolute(x))
    if l2 is not None:
        l2_term = ops.cast(l2, dtype=x.dtype) * ops.sum(ops.square(x))
        return l2_term if l1 is None else l1_term + l2_term
    return l1_term


def _make_torch_penalty():
    import torch

    class ElasticNetPenalty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, l1, l2):
            if ctx is not None:
                ctx.save_for_backward(x)
                ctx.l1, ctx.l2 = l1, l2
            if l1 is not None:
                l1_term = l1 * torch.sum(torch.abs(x))
            if l2 is not None:
                l2_term = l2 * torch.sum(torch.square(x))
                return l2_term if l1 is None else l1_term + l2_term
            return l1_term

        @staticmethod
        def backward(ctx, upstream):
            (x,) = ctx.saved_tensors
            l1, l2 = ctx.l1, ctx.l2
            if l1 is not None:
                grad = torch.sign(x).mul_(l1 * upstream)
                if l2 is not None:
                    grad = torch.addcmul(grad, x, (2 * l2) * upstream)
            else:
                grad = x * ((2 * l2) * upstream)
            return grad, None, None

    def penalty(x, l1, l2):
        x = x.value if isinstance(x, keras.Variable) else ops.convert_to_tensor(x)
        l1, l2 = (_torch_strength(s, x) for s in (l1, l2))
        if not (x.requires_grad and torch.is_grad_enabled()):
            # No gradient to record (a proximal penalty's value, evaluation):
            # the forward alone, without an autograd node.
            return ElasticNetPenalty.forward(None, x, l1, l2)
        return ElasticNetPenalty.apply(x, l1, l2)

    def _torch_strength(strength, x):
        if isinstance(strength, keras.Variable):
            return strength.value.to(x.dtype)
        return strength

    return penalty


def elastic_net(x, l1, l2):
    """`l1 * sum(abs(x)) + l2 * sum(square(x))`; a None strength skips its term."""
    if l1 is None and l2 is None:
        return ops.zeros((), dtype=keras.backend.standardize_dtype(x.dtype))
    return _penalty(x, l1, l2)


_penalty = _make_torch_penalty() if keras.backend.backend() == "torch" else _keras_penalty
