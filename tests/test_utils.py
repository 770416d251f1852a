"""apply_regularization / remove_regularization on built models."""

import keras
import numpy as np
import pytest

import keras_regx as kr


def _pretrained():
    """A trained Functional model with a nested Sequential and BatchNorm."""
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="inner_dense"),
         keras.layers.BatchNormalization(name="bn")], name="inner")
    inputs = keras.Input((6,))
    h = keras.layers.Dense(4, name="mid", kernel_regularizer=keras.regularizers.L1(0.1))(inner(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(h))
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = np.random.default_rng(1).normal(size=(32, 1)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, y, epochs=2, verbose=0)  # moves the BatchNorm statistics too
    return model, x, y


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights
            if not w.path.split("/")[-2:-1] == ["l2"]]


def test_apply_regularization_copies_the_model_with_the_regularizers_and_weights():
    model, x, _ = _pretrained()
    copy = kr.utils.apply_regularization(
        model, kernel_regularizer=kr.L2(1e-3), bias_regularizer=keras.regularizers.L1(1e-4))
    for name in ("mid", "head"):
        layer = copy.get_layer(name)
        assert type(layer.kernel_regularizer) is kr.L2
        assert type(layer.bias_regularizer) is keras.regularizers.L1
    nested = copy.get_layer("inner").get_layer("inner_dense")
    assert type(nested.kernel_regularizer) is kr.L2
    assert copy.get_layer("inner").get_layer("bn").get_config()["beta_regularizer"] is None
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    # The model itself is unchanged.
    assert model.get_layer("head").kernel_regularizer is None
    assert type(model.get_layer("mid").kernel_regularizer) is keras.regularizers.L1
    assert len(copy.losses) == 6 and len(model.losses) == 1


def test_fine_tuning_the_copy_equals_training_a_model_built_with_the_regularizer():
    model, x, y = _pretrained()
    strength = kr.schedules.Linear(0.0, 1e-2, end_step=4)
    copy = kr.utils.apply_regularization(model, kernel_regularizer=kr.L2(strength, name="l2"),
                                         layers=["mid", model.get_layer("head")])
    assert copy.get_layer("inner").get_layer("inner_dense").kernel_regularizer is None
    # The same architecture written with the regularizers from the start.
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="inner_dense"),
         keras.layers.BatchNormalization(name="bn")], name="inner")
    inputs = keras.Input((6,))
    h = keras.layers.Dense(4, name="mid", kernel_regularizer=kr.L2(strength, name="l2"))(inner(inputs))
    direct = keras.Model(inputs, keras.layers.Dense(
        1, name="head", kernel_regularizer=kr.L2(strength, name="l2"))(h))
    for name in ("mid", "head"):  # their own weights; the strength is the regularizer's
        for attribute in ("kernel", "bias"):
            getattr(direct.get_layer(name), attribute).assign(keras.ops.convert_to_numpy(
                getattr(model.get_layer(name), attribute)))
    direct.get_layer("inner").set_weights(model.get_layer("inner").get_weights())
    histories = []
    for candidate in (copy, direct):
        candidate.compile(keras.optimizers.SGD(0.05), "mse")
        histories.append(candidate.fit(
            x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
            callbacks=[kr.callbacks.RegularizationScheduler()]).history)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)
    assert histories[0]["l2/l2"] == histories[1]["l2/l2"]
    for a, b in zip(_weights(copy), _weights(direct)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # The original still trains: the copy shares no buffers with it.
    model.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize("rnn", [keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN])
def test_apply_regularization_reaches_recurrent_kernels(rnn):
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(rnn(4, name="rnn")(inputs)))
    x = np.random.default_rng(0).normal(size=(8, 5, 3)).astype("float32")
    copy = kr.utils.apply_regularization(model, recurrent_regularizer=kr.L2(0.5), layers=["rnn"])
    layer = copy.get_layer("rnn")
    assert type(layer.cell.recurrent_regularizer) is kr.L2
    assert layer.cell.kernel_regularizer is None
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    recurrent = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
    (penalty,) = copy.losses
    assert float(keras.ops.convert_to_numpy(penalty)) == pytest.approx(
        0.5 * float(np.sum(np.square(recurrent.astype("float64")))), rel=1e-5)
    plain = kr.utils.remove_regularization(copy)
    assert plain.get_layer("rnn").cell.recurrent_regularizer is None and plain.losses == []


def _all_layers(model):
    """`model`, its layers and those of the models nested in it."""
    yield model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def test_remove_regularization_drops_every_regularizer():
    model, x, y = _pretrained()
    regularized = kr.utils.apply_regularization(
        model, kernel_regularizer=kr.ElasticNet(1e-3, 1e-3),
        activity_regularizer=keras.regularizers.L2(1e-3))
    plain = kr.utils.remove_regularization(regularized)
    assert plain.losses == []
    for layer in _all_layers(plain):
        config = layer.get_config() if not isinstance(layer, keras.Model) else {}
        assert all(v is None for k, v in config.items() if k.endswith("_regularizer"))
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    plain.compile(keras.optimizers.SGD(0.01), "mse")
    loss = plain.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(float(np.mean((model.predict(x, verbose=0) - y) ** 2)), rel=1e-5)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize(
    "make,kwargs,exc,match",
    [
        (lambda: "model", dict(kernel_regularizer=kr.L2()), TypeError, r"`model`.*str"),
        (lambda: keras.Sequential([keras.layers.Dense(2)]), dict(kernel_regularizer=kr.L2()),
         ValueError, r"`model`.*built"),
        (lambda: _Subclassed(), dict(kernel_regularizer=kr.L2()), ValueError, r"Sequential or Functional.*_Subclassed"),
        (None, dict(kernel_regularizer=0.01), TypeError, r"`kernel_regularizer`.*Regularizer.*0.01"),
        (None, dict(), ValueError, r"at least one of"),
        (None, dict(kernel_regularizer=kr.L2(), layers="head"), TypeError, r"`layers`.*'head'"),
        (None, dict(kernel_regularizer=kr.L2(), layers=["nope"]), ValueError, r"'nope' is not a layer.*head"),
        (None, dict(kernel_regularizer=kr.L2(), layers=["drop"]), ValueError, r"'drop'.*Dropout.*takes none"),
        (None, dict(recurrent_regularizer=kr.L2(), layers=["head"]), ValueError,
         r"'head'.*Dense.*takes none.*recurrent_regularizer"),
        (None, dict(recurrent_regularizer="l2"), TypeError, r"`recurrent_regularizer`.*Regularizer"),
    ],
)
def test_apply_regularization_bad_input(make, kwargs, exc, match):
    if make is None:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.1, name="drop"),
                                  keras.layers.Dense(2, name="head")])
    else:
        model = make()
        if isinstance(model, _Subclassed):
            model(np.ones((1, 3), "float32"))
    with pytest.raises(exc, match=match):
        kr.utils.apply_regularization(model, **kwargs)
