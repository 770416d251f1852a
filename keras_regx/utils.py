"""Model surgery: adding regularization to (or removing it from) a built model.

`mc_predict` moved to `keras_regx.uncertainty`; `kr.utils.mc_predict` is
the same function.
"""

from collections.abc import Sequence

import keras
from keras import ops

from keras_regx._hyperparameters import equal_schedules_shared
from keras_regx._model_walk import layers as model_layers
from keras_regx._model_walk import own_variables
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import describe
from keras_regx.uncertainty import mc_predict

__all__ = [
    "apply_regularization",
    "mc_predict",
    "remove_regularization",
]


# Config keys each argument of `apply_regularization` sets.
_KERNEL_KEYS = (
    "kernel_regularizer",
    "depthwise_regularizer",
    "pointwise_regularizer",
    "embeddings_regularizer",
)
_ARGUMENTS = {
    "kernel_regularizer": _KERNEL_KEYS,
    "bias_regularizer": ("bias_regularizer",),
    "activity_regularizer": ("activity_regularizer",),
    "recurrent_regularizer": ("recurrent_regularizer",),
}


def _check_regularizer(name, value):
    if value is None or isinstance(value, keras.regularizers.Regularizer):
        return value
    raise ArgumentTypeError(
        f"Invalid value for argument `{name}`: expected None or a "
        "`keras.regularizers.Regularizer` (e.g. `keras_regx.L2(1e-4)`). "
        f"Received: {name}={describe(value)}"
    )


def _check_model(model, function):
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


def _layer_tree(model):
    """`model` and its layers, nested models included, depth first, without
    the keras_regx regularizers (tracked as sublayers of the layers they
    regularize)."""
    from keras_regx.regularizers import ScheduledRegularizer

    return [layer for layer in model_layers(model) if not isinstance(layer, ScheduledRegularizer)]


def _clone(model, edit):
    """A copy of `model` whose layer configs went through `edit`, same weights."""
    def clone_layer(layer):
        config = edit(layer, layer.get_config())
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    # Keras builds a clone's layers as it calls them; copy every layer's own
    # weights across (the new regularizers' strengths are their own state).
    # `ops.copy`: on JAX, fit() donates the state buffers of the model it
    # trains, so the two models must not share arrays.
    old, new = _layer_tree(model), _layer_tree(copy)
    if [type(a) for a in old] != [type(b) for b in new]:  # pragma: no cover
        raise RuntimeError("The copy's layers do not match the model's.")
    for a, b in zip(old, new):
        for source, target in zip(own_variables(a), own_variables(b)):
            target.assign(ops.copy(source.value))
    return copy


def apply_regularization(
    model: keras.Model,
    kernel_regularizer: keras.regularizers.Regularizer | None = None,
    bias_regularizer: keras.regularizers.Regularizer | None = None,
    activity_regularizer: keras.regularizers.Regularizer | None = None,
    layers: Sequence[str | keras.layers.Layer] | None = None,
    recurrent_regularizer: keras.regularizers.Regularizer | None = None,
) -> keras.Model:
    """A copy of a built model with regularizers attached, same weights.

    Lets a pretrained model be fine-tuned with regularization, which Keras
    cannot add to a built layer. Works on Sequential and Functional models,
    nested ones included, through `keras.models.clone_model`; every layer of
    the copy is rebuilt from its config with the regularizers set, then gets
    the original's weights. The model itself is left as it is; compile the
    copy before training it.

    `kernel_regularizer` goes to the layer's `kernel_regularizer` (and the
    `depthwise_regularizer`, `pointwise_regularizer` and
    `embeddings_regularizer` of the layers that have those instead);
    `bias_regularizer`, `activity_regularizer` and `recurrent_regularizer`
    (the recurrent kernel of `LSTM`, `GRU`, `SimpleRNN` and their `ConvLSTM`
    kin) to the arguments of those names. An argument left None keeps what the layer had. Each layer gets
    its own copy of a regularizer (rebuilt from its config), so a scheduled
    strength starts from its schedule's first value; the copies share one
    schedule object, so they hold one variable per scheduled argument.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.
        kernel_regularizer: None or a `keras.regularizers.Regularizer`.
        bias_regularizer: None or a `keras.regularizers.Regularizer`.
        activity_regularizer: None or a `keras.regularizers.Regularizer`.
        layers: None (every layer that takes one of the arguments), or a list
            of layer names or layer objects of `model` (nested ones too); a
            listed layer that takes none of the given arguments is an error.
        recurrent_regularizer: None or a `keras.regularizers.Regularizer`.

    Returns:
        A new, uncompiled model.

    Example:
    ```python
    >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"),
    ...                          keras.layers.Dense(1, name="out")])
    >>> tuned = kr.utils.apply_regularization(base, kernel_regularizer=kr.L2(1e-4),
    ...                                       layers=["hidden"])
    >>> type(tuned.get_layer("hidden").kernel_regularizer).__name__
    'L2'
    >>> tuned.get_layer("out").kernel_regularizer is None
    True
    >>> x = np.ones((2, 4), "float32")
    >>> bool(np.allclose(tuned.predict(x, verbose=0), base.predict(x, verbose=0)))
    True
    ```
    """
    _check_model(model, "apply_regularization")
    given = {
        name: _check_regularizer(name, value)
        for name, value in (
            ("kernel_regularizer", kernel_regularizer),
            ("bias_regularizer", bias_regularizer),
            ("activity_regularizer", activity_regularizer),
            ("recurrent_regularizer", recurrent_regularizer),
        )
        if value is not None
    }
    if not given:
        raise ValueError(
            "`apply_regularization` needs at least one of `kernel_regularizer`, "
            "`bias_regularizer`, `activity_regularizer` and "
            "`recurrent_regularizer`. Received: all None"
        )
    chosen = _chosen_layers(model, layers, given)
    serialized = {k: keras.saving.serialize_keras_object(v) for k, v in given.items()}

    def edit(layer, config):
        if chosen is not None and id(layer) not in chosen:
            return config
        for argument, value in serialized.items():
            for key in _ARGUMENTS[argument]:
                if key in config:
                    config[key] = value
        return config

    with equal_schedules_shared():  # the copies share their schedules' variables
        return _clone(model, edit)


def _chosen_layers(model, layers, given):
    """ids of the layers named in `layers` (None: all), checked."""
    if layers is None:
        return None
    if isinstance(layers, (str, keras.layers.Layer)) or not isinstance(layers, (list, tuple)):
        raise ArgumentTypeError(
            "Invalid value for argument `layers`: expected None or a list of "
            f"layer names or layers. Received: layers={describe(layers)}"
        )
    tree = _layer_tree(model)[1:]
    by_name = {layer.name: layer for layer in tree}
    chosen = set()
    for item in layers:
        layer = by_name.get(item) if isinstance(item, str) else item
        if layer is None or not any(layer is t for t in tree):
            raise ValueError(
                f"Invalid value for argument `layers`: {item!r} is not a layer "
                f"of the model. Expected names among {sorted(by_name)}."
            )
        keys = [k for argument in given for k in _ARGUMENTS[argument]]
        if not any(k in layer.get_config() for k in keys):
            raise ValueError(
                f"Invalid value for argument `layers`: layer '{layer.name}' "
                f"({type(layer).__name__}) takes none of "
                f"{sorted(given)}. Received: layers={list(layers)!r}"
            )
        chosen.add(id(layer))
    return chosen


def remove_regularization(model: keras.Model) -> keras.Model:
    """A copy of a built model without any regularizer, same weights.

    The reverse of `apply_regularization`: every `*_regularizer` argument of
    every layer (kernel, bias, activity, depthwise, recurrent, ...) is set to
    None in the copy. Works on Sequential and Functional models, nested ones
    included; the model itself is left as it is.

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.

    Returns:
        A new, uncompiled model.

    Example:
    ```python
    >>> model = keras.Sequential([keras.Input((4,)),
    ...                           keras.layers.Dense(2, kernel_regularizer=kr.L1(0.1))])
    >>> plain = kr.utils.remove_regularization(model)
    >>> plain.layers[0].kernel_regularizer is None, len(plain.losses)
    (True, 0)
    ```
    """
    _check_model(model, "remove_regularization")

    def edit(layer, config):
        for key in config:
            if key.endswith("_regularizer"):
                config[key] = None
        return config

    return _clone(model, edit)
