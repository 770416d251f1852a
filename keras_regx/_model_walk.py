"""Walks over a model: its layers, their own weights, its optimizer chain.

Shared by the public modules that look into a user's model (`sparsity`,
`callbacks`, `utils`) and by the proximal steps, so that all of them see the
same layers in the same order.
"""

import keras

from keras_regx._hyperparameters import ScheduledHyperparameters


class Attachment:
    """Marker: a keras_regx object that is a Keras layer only so that the
    layer holding it tracks its state (a regularizer, a pruning constraint);
    never called as a layer, and not part of the model's layer structure."""


def layers(model):
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


def own_variables(layer):
    """The layer's own weights (a layer's `weights` include its sublayers')."""
    return list(getattr(layer, "_trainable_variables", [])) + list(
        getattr(layer, "_non_trainable_variables", [])
    )


def is_kernel(variable):
    name = variable.name
    return name == "kernel" or name.endswith("_kernel")


def is_bias(variable):
    name = variable.name
    return name == "bias" or name.endswith("_bias")


def scheduled_objects(model):
    """Every object of `model` with scheduled hyperparameters, once each.

    Looks through the model's layers, nested ones included (our regularizers
    are tracked as sublayers of the layers they regularize), and through the
    regularizers attached to the model's weights.
    """
    found = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, ScheduledHyperparameters):
            found[id(layer)] = layer
        activity = getattr(layer, "activity_regularizer", None)
        if isinstance(activity, ScheduledHyperparameters):
            found[id(activity)] = activity
    for variable in model.weights:
        regularizer = getattr(variable, "regularizer", None)
        if isinstance(regularizer, ScheduledHyperparameters):
            found[id(regularizer)] = regularizer
    return [obj for obj in found.values() if obj.scheduled_hyperparameters]


def penalized(model):
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


def optimizers(optimizer):
    """`optimizer` and the ones it wraps (`inner_optimizer`), outermost first."""
    chain = []
    while optimizer is not None:
        chain.append(optimizer)
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return chain


def updating_optimizer(optimizer):
    """The optimizer that updates the weights: the innermost one wrapped
    (through a `LossScaleOptimizer`, a `ScheduledWeightDecay`)."""
    return optimizers(optimizer)[-1]
