"""Model surgery: copies of a built model with edited layer configs.

Shared by `keras_regx.utils` (regularizers on and off) and
`keras_regx.pruning` (pruning on and off): `clone` rebuilds every layer from
its edited config through `keras.models.clone_model` and copies the weights.
"""

import keras
from keras import ops

from keras_regx._model_walk import Attachment
from keras_regx._model_walk import layers as model_layers
from keras_regx._model_walk import own_variables
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import describe


def check_model(model, function):
    if not isinstance(model, keras.Model):
        raise ArgumentTypeError(
            f"Invalid value for argument `model` of `{function}`: expected a "
            f"built Sequential or Functional Keras model. Received: "
            f"model={describe(model)}"
        )
    if not model.built:
        raise ValueError(
            f"Invalid value for argument `model` of `{function}`: expected a "
            "built model (its weights are copied); build it or call it on a "
            f"batch first. Received: an unbuilt {type(model).__name__}"
        )
    functional = any(cls.__name__ == "Functional" for cls in type(model).__mro__)
    if not isinstance(model, keras.Sequential) and not functional:
        raise ValueError(
            f"`{function}` copies a model with `keras.models.clone_model`, which "
            "needs a Sequential or Functional model; a subclassed model "
            "builds its layers in code. Received: model of type "
            f"{type(model).__name__}"
        )


def layer_tree(model):
    """`model` and its layers, nested models included, depth first, without
    the keras_regx objects attached to layers (regularizers, pruning
    constraints: tracked as sublayers of the layers they act on)."""
    return [layer for layer in model_layers(model) if not isinstance(layer, Attachment)]


def clone(model, edit):
    """A copy of `model` whose layer configs went through `edit`, same weights."""
    def clone_layer(layer):
        config = edit(layer, layer.get_config())
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    # Keras builds a clone's layers as it calls them; copy every layer's own
    # weights across (the new regularizers' strengths are their own state).
    # `ops.copy`: on JAX, fit() donates the state buffers of the model it
    # trains, so the two models must not share arrays.
    old, new = layer_tree(model), layer_tree(copy)
    if [type(a) for a in old] != [type(b) for b in new]:  # pragma: no cover
        raise RuntimeError("The copy's layers do not match the model's.")
    for a, b in zip(old, new):
        for source, target in zip(own_variables(a), own_variables(b)):
            target.assign(ops.copy(source.value))
    return copy



def chosen_layers(model, layers, given, arguments, lacking=None):
    """ids of the layers named in `layers` (None: all), checked: each must
    take one of the config keys `arguments[name]` of the `given` arguments
    (`lacking`: what the error says a layer that takes none lacks)."""
    if layers is None:
        return None
    if isinstance(layers, (str, keras.layers.Layer)) or not isinstance(layers, (list, tuple)):
        raise ArgumentTypeError(
            "Invalid value for argument `layers`: expected None or a list of "
            f"layer names or layers. Received: layers={describe(layers)}"
        )
    tree = layer_tree(model)[1:]
    by_name = {layer.name: layer for layer in tree}
    chosen = set()
    for item in layers:
        layer = by_name.get(item) if isinstance(item, str) else item
        if layer is None or not any(layer is t for t in tree):
            raise ValueError(
                f"Invalid value for argument `layers`: {item!r} is not a layer "
                f"of the model. Expected names among {sorted(by_name)}."
            )
        keys = [k for argument in given for k in arguments[argument]]
        if not any(k in layer.get_config() for k in keys):
            raise ValueError(
                f"Invalid value for argument `layers`: layer '{layer.name}' "
                f"({type(layer).__name__}) "
                f"{lacking or f'takes none of {sorted(given)}'}. "
                f"Received: layers={list(layers)!r}"
            )
        chosen.add(id(layer))
    return chosen
