"""ConcreteDropout: the loss terms in compiled fit, masks, seeds, inference, saving."""

import math

import keras
import numpy as np
import pytest
from conftest import PROPERTY
from conftest import SEEDS
from conftest import assert_config_round_trips
from conftest import StepLosses
from conftest import jit_compile_options
from conftest import run_python
from hypothesis import given
from hypothesis import strategies as st

import keras_regx as kr
from keras_regx.layers import ConcreteDropout


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def logit(p):
    return np.log(p) - np.log1p(-p)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def penalty(kernel, p, input_dim, wr, dr):
    """The paper's two terms, in float64."""
    kernel = np.asarray(kernel, "float64")
    weight = wr * np.square(kernel).sum() / (1 - p)
    dropout = dr * input_dim * (p * np.log(p) + (1 - p) * np.log(1 - p))
    return weight + dropout


def penalty_grad_logit(kernel, p, input_dim, wr, dr):
    """d penalty / d p_logit: wr |W|^2 p / (1 - p) + dr K logit(p) p (1 - p)."""
    a = wr * np.square(np.asarray(kernel, "float64")).sum()
    return a * p / (1 - p) + dr * input_dim * logit(p) * p * (1 - p)


# Two wrappers, a Conv1D on (4, 2) inputs (K = 8) and a Dense on its 9 outputs
# (K = 9). The inputs are zero and only the last layer has a bias, which is
# also the target: the data loss is 0 whatever the masks, and so is its
# gradient, so the loss and its gradient are exactly the two terms per layer.
RNG = np.random.default_rng(0)
CONV_KERNEL = RNG.normal(size=(2, 2, 3)).astype("float32")
DENSE_KERNEL = RNG.normal(size=(9, 2)).astype("float32")
BIAS = np.array([0.5, -1.5], "float32")
P_CONV, P_DENSE = 0.3, 0.6
WR, DR = 0.05, 0.01


def zero_data_loss_model(optimizer, jit_compile="auto"):
    def wrap(layer, p):
        return ConcreteDropout(layer, weight_regularizer=WR, dropout_regularizer=DR,
                               init_min=p, init_max=p, seed=1)

    model = keras.Sequential([
        keras.Input((4, 2)),
        wrap(keras.layers.Conv1D(3, 2, use_bias=False,
                                 kernel_initializer=keras.initializers.Constant(CONV_KERNEL)),
             P_CONV),
        keras.layers.Flatten(),
        wrap(keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant(DENSE_KERNEL),
                                bias_initializer=keras.initializers.Constant(BIAS)),
             P_DENSE),
    ])
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    return model


def zero_data(n):
    return np.zeros((n, 4, 2), "float32"), np.tile(BIAS, (n, 1))


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_loss_is_exactly_the_two_terms_and_trains_them(jit_compile):
    lr = 0.5
    model = zero_data_loss_model(keras.optimizers.SGD(lr), jit_compile)
    x, y = zero_data(4)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # one step
    expected_loss = (penalty(CONV_KERNEL, P_CONV, 8, WR, DR)
                     + penalty(DENSE_KERNEL, P_DENSE, 9, WR, DR))
    assert history.history["loss"][0] == pytest.approx(expected_loss, rel=1e-5)

    conv, dense = model.layers[0], model.layers[2]
    after = 0.0
    for layer, kernel, p, k in [(conv, CONV_KERNEL, P_CONV, 8),
                                (dense, DENSE_KERNEL, P_DENSE, 9)]:
        new_logit = logit(p) - lr * penalty_grad_logit(kernel, p, k, WR, DR)
        assert float(numpy(layer.p_logit)) == pytest.approx(new_logit, rel=1e-5)
        new_p = sigmoid(new_logit)
        assert layer.rate == pytest.approx(new_p, rel=1e-5)
        # d/dW of wr |W|^2 / (1 - p) = 2 wr W / (1 - p).
        new_kernel = kernel * (1 - lr * 2 * WR / (1 - p))
        np.testing.assert_allclose(numpy(layer.layer.kernel), new_kernel, rtol=1e-5)
        after += penalty(new_kernel, new_p, k, WR, DR)
    # The bias is outside the weight term (and the data loss is 0): unchanged.
    np.testing.assert_array_equal(numpy(dense.layer.bias), BIAS)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(after, rel=1e-5)


@pytest.mark.parametrize(
    "make,input_shape,kernel_attr",
    [
        (lambda: keras.layers.Dense(3), (5, 4), "kernel"),
        (lambda: keras.layers.Conv2D(2, 3), (1, 5, 5, 3), "kernel"),
        (lambda: keras.layers.SeparableConv1D(4, 3), (1, 6, 2), "depthwise_kernel"),
    ],
    ids=["Dense", "Conv2D", "SeparableConv1D"],
)
def test_which_kernel_and_input_dim(make, input_shape, kernel_attr):
    layer = ConcreteDropout(make(), weight_regularizer=0.01, dropout_regularizer=0.002,
                            init_min=0.2, init_max=0.2)
    layer(np.ones(input_shape, "float32"))
    (loss,) = layer.losses
    k = int(np.prod(input_shape[1:]))  # every entry but the batch axis
    expected = penalty(numpy(getattr(layer.layer, kernel_attr)), 0.2, k, 0.01, 0.002)
    assert float(numpy(loss)) == pytest.approx(expected, rel=1e-5)


def test_layer_without_kernel_is_refused_at_build():
    layer = ConcreteDropout(keras.layers.Activation("relu"))
    with pytest.raises(ValueError, match="`kernel` or a `depthwise_kernel`.*Activation"):
        layer(np.ones((2, 3), "float32"))


def mask_scale(layer, x, training):
    """The factor each input entry was multiplied by (identity wrapped kernel)."""
    return numpy(layer(x, training=training)) / x


def identity_wrapper(d, **kwargs):
    dense = keras.layers.Dense(d, use_bias=False, kernel_initializer="identity")
    return ConcreteDropout(dense, **kwargs)


@pytest.mark.parametrize("temperature", [0.1, 1.0])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_mask_statistics(p, temperature):
    layer = identity_wrapper(100, init_min=p, init_max=p, temperature=temperature, seed=0)
    keep = mask_scale(layer, np.ones((200, 100), "float32"), training=True) * (1 - p)
    n = keep.size

    def within_5_standard_errors(fraction, expected):
        return abs(fraction - expected) < 5 * np.sqrt(expected * (1 - expected) / n)

    # keep = 1 - z = sigmoid(-(logit(p) + L) / t) with logistic noise L, so
    # P(keep < c) = sigmoid(t logit(c) + logit(p)): the drop fraction (c = 1/2)
    # is p at every temperature, and the mass near 0 and 1 is known exactly.
    assert within_5_standard_errors((keep < 0.5).mean(), p)
    c = 0.1
    near_binary = sigmoid(temperature * logit(c) + logit(p)) + sigmoid(temperature * logit(c)
                                                                       - logit(p))
    assert within_5_standard_errors(((keep < c) | (keep > 1 - c)).mean(), near_binary)
    if temperature == 0.1:
        # The mean of keep / (1 - p) is within 0.2% of 1 (1e7 numpy draws:
        # 0.9988 at p = 0.1, 1.0000 at p = 0.5): that plus 5 standard errors.
        assert abs(keep.mean() / (1 - p) - 1.0) < 0.002 + 5 * np.sqrt(p / (1 - p) / n)


@pytest.mark.parametrize("training", [None, False])
def test_mc_inference_keeps_sampling(training):
    layer = identity_wrapper(50, init_min=0.5, init_max=0.5, seed=0)
    x = np.ones((40, 50), "float32")
    first, second = mask_scale(layer, x, training), mask_scale(layer, x, training)
    assert abs((first < 1.0).mean() - 0.5) < 0.05
    assert not np.array_equal(first, second)


def test_deterministic_inference_is_the_identity_mask():
    layer = identity_wrapper(50, init_min=0.5, init_max=0.5, mc_inference=False)
    x = np.random.normal(size=(40, 50)).astype("float32")
    np.testing.assert_array_equal(numpy(layer(x)), x)
    np.testing.assert_array_equal(numpy(layer(x, training=False)), x)
    assert not np.allclose(numpy(layer(x, training=True)), x)  # still drops in training
    assert len(layer.losses) == 1  # the terms are added in every mode, like weight decay


def test_seeds():
    x = np.ones((40, 50), "float32")

    def make(seed):
        return identity_wrapper(50, init_min=0.5, init_max=0.5, seed=seed)

    a, b = make(7), make(7)
    first_a, first_b = numpy(a(x, training=True)), numpy(b(x, training=True))
    np.testing.assert_array_equal(first_a, first_b)  # same seed, same masks
    assert not np.array_equal(first_a, numpy(a(x, training=True)))  # fresh masks
    assert not np.array_equal(first_a, numpy(make(8)(x, training=True)))
    # The seed also fixes a random initial rate.
    rates = [ConcreteDropout(keras.layers.Dense(2), init_min=0.1, init_max=0.5, seed=s).rate
             for s in (3, 3, 4)]
    assert rates[0] == rates[1] != rates[2]
    assert all(0.1 <= r <= 0.5 for r in rates)


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_fresh_masks_each_step_in_compiled_fit_and_predict(jit_compile):
    # lr = 0 and one repeated batch: only the masks can change the loss, so
    # distinct step losses mean the seed generator advances inside the step
    # (on JAX, as tracked state of the jitted function).
    model = keras.Sequential([keras.Input((10,)), identity_wrapper(10, seed=0,
                                                                   init_min=0.5,
                                                                   init_max=0.5)])
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    x = np.random.normal(size=(4, 10)).astype("float32")
    steps = StepLosses()
    model.fit(np.tile(x, (5, 1)), np.zeros((20, 10)), batch_size=4, epochs=1,
              shuffle=False, verbose=0, callbacks=[steps])
    assert len(set(np.round(steps.losses, 6))) == 5
    assert not np.array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))


def test_mixed_precision():
    layer = ConcreteDropout(keras.layers.Dense(4, dtype="mixed_float16"),
                            dtype="mixed_float16", seed=0)
    y = layer(np.ones((3, 5), "float32"), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert layer.p_logit.dtype == "float32"
    (loss,) = layer.losses
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    expected = penalty(numpy(layer.layer.kernel), 0.1, 5, 1e-6, 1e-5)
    assert float(numpy(loss)) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_in_compiled_fit(policy, jit_compile):
    # Under a global mixed policy the wrapped layer computes in 16 bits, the
    # drop probability stays a float32 weight and is learned.
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = ConcreteDropout(keras.layers.Dense(8, activation="relu"),
                                init_min=0.3, init_max=0.3, seed=0)
        model = keras.Sequential([keras.Input((5,)), layer,
                                  keras.layers.Dense(1, dtype="float32")])
        optimizer = keras.optimizers.SGD(0.05)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=128.0)
        model.compile(optimizer, "mse", jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 5)).astype("float32")
        y = x @ rng.normal(size=(5, 1)).astype("float32")
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
        compute = keras.backend.standardize_dtype(layer(x[:2], training=True).dtype)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert compute == policy.split("_")[1]
    assert layer.p_logit.dtype == "float32"
    assert np.isfinite(history.history["loss"]).all()
    assert 0.0 < layer.rate < 1.0 and layer.rate != pytest.approx(0.3, abs=1e-6)


def test_rate_property():
    layer = ConcreteDropout(keras.layers.Dense(2), init_min=0.25, init_max=0.25)
    assert isinstance(layer.rate, float)
    assert layer.rate == pytest.approx(0.25, rel=1e-6)  # readable before the first call
    layer.p_logit.assign(0.0)
    assert layer.rate == 0.5


def test_learned_rate_falls_as_the_data_set_grows():
    """The paper's synthetic experiment (Gal et al. 2017, section 5.1), small.

    y = 2x + 8 + N(0, 1), weight_regularizer = l**2 / N and dropout_regularizer
    = 2 / N, the same number of Adam steps for each N (as the paper's epochs
    per N roughly give). Measured with seeds 0-3 on each backend: the mean rate
    of the two wrappers that drop hidden units is 0.25-0.33 at N = 10 and
    0.04-0.05 at N = 1000. The test asks for a rate above 0.15 at N = 10 and a
    fall of more than 0.1: margins of 0.1 on both. The paper's l is 1e-4; at
    these sizes the weight term is negligible either way.
    examples/concrete_dropout.py runs more sizes.
    """

    def hidden_rate(n, steps=120, batch_size=32, length_scale=1e-2):
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n, 1)).astype("float32")
        y = 2 * x + 8 + rng.normal(size=(n, 1)).astype("float32")

        def wrap(layer, seed):
            return ConcreteDropout(layer, weight_regularizer=length_scale**2 / n,
                                   dropout_regularizer=2 / n, seed=seed)

        model = keras.Sequential([
            keras.Input((1,)),
            wrap(keras.layers.Dense(32, activation="relu"), 1),
            wrap(keras.layers.Dense(32, activation="relu"), 2),
            wrap(keras.layers.Dense(1), 3),
        ])
        model.compile(keras.optimizers.Adam(3e-2), "mse")
        # One epoch over copies of the data: `steps` minibatches without the
        # per-epoch overhead of hundreds of tiny epochs.
        batch_size = min(batch_size, n)
        copies = -(-steps * batch_size // n)
        model.fit(np.tile(x, (copies, 1)), np.tile(y, (copies, 1)),
                  batch_size=batch_size, epochs=1, verbose=0)
        return np.mean([model.layers[1].rate, model.layers[2].rate])

    small, large = hidden_rate(10), hidden_rate(1000)
    assert small > 0.15
    assert small - large > 0.1


def test_config_round_trip():
    layer = ConcreteDropout(keras.layers.Conv2D(4, 3, name="conv"), weight_regularizer=2e-6,
                            dropout_regularizer=3e-5, init_min=0.05, init_max=0.2,
                            temperature=0.2, mc_inference=False, seed=5, name="cd")
    config = layer.get_config()
    assert {k: config[k] for k in ("weight_regularizer", "dropout_regularizer", "init_min",
                                   "init_max", "temperature", "mc_inference", "seed")} == {
        "weight_regularizer": 2e-6, "dropout_regularizer": 3e-5, "init_min": 0.05,
        "init_max": 0.2, "temperature": 0.2, "mc_inference": False, "seed": 5}
    restored = ConcreteDropout.from_config(config)
    assert isinstance(restored.layer, keras.layers.Conv2D)
    assert restored.layer.get_config() == layer.layer.get_config()
    assert restored.get_config() == config
    generic = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(generic, ConcreteDropout) and generic.get_config() == config


def test_save_load_in_fresh_process_and_keep_training(tmp_path):
    x = np.random.normal(size=(32, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([
        keras.Input((3,)),
        ConcreteDropout(keras.layers.Dense(8, activation="relu"), init_min=0.2, init_max=0.4,
                        weight_regularizer=1e-3, dropout_regularizer=1e-2,
                        mc_inference=False, seed=1, name="cd1"),
        ConcreteDropout(keras.layers.Dense(1), mc_inference=False, seed=2, name="cd2"),
    ])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    rates = [model.get_layer(n).rate for n in ("cd1", "cd2")]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "out.npy", model.predict(x, verbose=0))
    model.save(tmp_path / "model.keras")
    got = run_python(
        """
        import json, keras, numpy as np
        import keras_regx
        model = keras.models.load_model("model.keras", safe_mode=True)
        x, y = np.load("x.npy"), np.load("y.npy")
        rates = [model.get_layer(n).rate for n in ("cd1", "cd2")]
        same = bool(np.array_equal(model.predict(x, verbose=0), np.load("out.npy")))
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        print(json.dumps({
            "rates": rates, "same": same, "loss": history.history["loss"],
            "after": [model.get_layer(n).rate for n in ("cd1", "cd2")],
            "mc_inference": model.get_layer("cd1").mc_inference,
        }))
        """,
        tmp_path,
    )
    assert got["rates"] == rates  # bit for bit
    assert got["same"]  # deterministic inference: identical outputs
    assert got["mc_inference"] is False
    assert all(np.isfinite(got["loss"]))
    assert got["after"] != rates  # the rate keeps learning after loading



def test_saved_layout_is_the_rate_then_the_seed_state():
    # Files of earlier versions hold, for the wrapper, `p_logit` then the
    # mask generator's state, and the wrapped layer's weights under its own
    # name: the order and number stay, so those files load with every value.
    layer = ConcreteDropout(keras.layers.Dense(2), seed=4)
    layer(np.ones((1, 3), "float32"))
    store = {}
    layer.save_own_variables(store)
    assert list(store) == ["0", "1"]
    assert store["0"] is layer.p_logit and store["1"] is layer.seed_generator.state
    expected = [layer.p_logit, layer.seed_generator.state, layer.layer.kernel, layer.layer.bias]
    assert len(layer.variables) == len(expected)
    assert all(got is want for got, want in zip(layer.variables, expected))
    # `seed` is kept as given; the generator is separate state.
    assert layer.seed == 4
    assert ConcreteDropout(keras.layers.Dense(2)).seed is None

@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(layer="dense"), TypeError, r"`layer`: expected a keras.layers.Layer.*'dense'"),
        (dict(weight_regularizer=-1e-6), ValueError, r"`weight_regularizer`.*>= 0"),
        (dict(weight_regularizer=float("nan")), ValueError, r"`weight_regularizer`.*finite"),
        (dict(dropout_regularizer="1e-5"), TypeError, r"`dropout_regularizer`.*float"),
        (dict(dropout_regularizer=float("inf")), ValueError, r"`dropout_regularizer`.*finite"),
        (dict(init_min=0.0), ValueError, r"`init_min`.*\(0, 1\).*init_min=0.0"),
        (dict(init_max=1.0), ValueError, r"`init_max`.*\(0, 1\)"),
        (dict(init_min=0.3, init_max=0.2), ValueError,
         r"`init_max`.*>= init_min=0.3.*init_max=0.2"),
        (dict(init_min=True), TypeError, r"`init_min`"),
        (dict(temperature=0.0), ValueError, r"`temperature`.*> 0"),
        (dict(temperature=-1), ValueError, r"`temperature`"),
        (dict(mc_inference=1), TypeError, r"`mc_inference`.*bool"),
        (dict(seed=1.5), TypeError, r"`seed`.*int or None"),
    ],
)
def test_bad_input(kwargs, exc, match):
    kwargs = {"layer": keras.layers.Dense(2), **kwargs}
    with pytest.raises(exc, match=match):
        ConcreteDropout(**kwargs)


def test_top_level_access():
    assert kr.layers.ConcreteDropout is ConcreteDropout
    assert "ConcreteDropout" in kr.layers.__all__


# Config round trips for random valid arguments (hypothesis).

PROBABILITIES = st.floats(0.0, 1.0, exclude_min=True, exclude_max=True)


@PROPERTY
@given(
    units=st.integers(1, 64),
    activation=st.sampled_from([None, "relu", "tanh"]),
    weight_regularizer=st.floats(0.0, 1e3),
    dropout_regularizer=st.floats(0.0, 1e3),
    init=st.lists(PROBABILITIES, min_size=2, max_size=2).map(sorted),
    temperature=st.floats(0.0, 1e3, exclude_min=True),
    mc_inference=st.booleans(),
    seed=SEEDS,
    bad=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(math.nan)),
)
def test_config_round_trips_for_random_arguments(
    units, activation, weight_regularizer, dropout_regularizer, init, temperature,
    mc_inference, seed, bad,
):
    layer = ConcreteDropout(
        keras.layers.Dense(units, activation=activation),
        weight_regularizer=weight_regularizer, dropout_regularizer=dropout_regularizer,
        init_min=init[0], init_max=init[1], temperature=temperature,
        mc_inference=mc_inference, seed=seed,
    )
    # The initial rate lies in [init_min, init_max], to float32's precision.
    assert init[0] * (1 - 1e-5) - 1e-7 <= layer.rate <= init[1] * (1 + 1e-5) + 1e-7
    assert_config_round_trips(layer)
    config = layer.get_config()
    for name in ("init_min", "init_max"):
        with pytest.raises(ValueError, match=f"`{name}`"):
            ConcreteDropout.from_config({**config, name: bad})
    with pytest.raises(ValueError, match="`temperature`"):
        ConcreteDropout.from_config({**config, "temperature": min(bad, 0.0)})
