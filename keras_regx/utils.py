"""Model surgery: adding regularization to (or removing it from) a built model.

`mc_predict` moved to `keras_regx.uncertainty`; `kr.utils.mc_predict` is
the same function.
"""

from collections.abc import Sequence

import keras

from keras_regx._hyperparameters import equal_schedules_shared
from keras_regx._surgery import check_model
from keras_regx._surgery import chosen_layers
from keras_regx._surgery import clone
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
    check_model(model, "apply_regularization")
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
    chosen = chosen_layers(model, layers, given, _ARGUMENTS)
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
        return clone(model, edit)


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
    check_model(model, "remove_regularization")

    def edit(layer, config):
        for key in config:
            if key.endswith("_regularizer"):
                config[key] = None
        return config

    return clone(model, edit)
