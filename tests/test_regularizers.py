import base64
import contextlib
import json
import marshal
import math
import warnings
import zipfile

import keras
import numpy as np
import pytest
from conftest import diabetes
from conftest import fit_full_batch
from conftest import jit_compile_options
from conftest import mse_lipschitz
from conftest import relative_error
from conftest import run_python
from hypothesis import given
from hypothesis import note
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops

import keras_regx as kr
from keras_regx import regularizers
from keras_regx import schedules

PAIRS = [
    (lambda: regularizers.L1(0.013), lambda: keras.regularizers.L1(0.013)),
    (lambda: regularizers.L2(0.021), lambda: keras.regularizers.L2(0.021)),
    (
        lambda: regularizers.ElasticNet(l1=0.013, l2=0.021),
        lambda: keras.regularizers.L1L2(l1=0.013, l2=0.021),
    ),
    (
        lambda: regularizers.ElasticNet(l1=0.0, l2=0.021),
        lambda: keras.regularizers.L1L2(l1=0.0, l2=0.021),
    ),
    (
        lambda: regularizers.ElasticNet(l1=0.013, l2=0.0),
        lambda: keras.regularizers.L1L2(l1=0.013, l2=0.0),
    ),
    (
        lambda: regularizers.ElasticNet(l1=0.0, l2=0.0),
        lambda: keras.regularizers.L1L2(l1=0.0, l2=0.0),
    ),
]
PAIR_IDS = ["L1", "L2", "ElasticNet", "ElasticNet-l2-only", "ElasticNet-l1-only", "ElasticNet-zero"]


def test_top_level_exports():
    assert kr.L1 is regularizers.L1
    assert kr.L2 is regularizers.L2
    assert kr.ElasticNet is regularizers.ElasticNet
    assert isinstance(kr.__version__, str)
    assert regularizers.L1().l1 == 0.01 and regularizers.L2().l2 == 0.01


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_penalty_equals_keras(ours, theirs, dtype):
    x = np.random.default_rng(0).normal(size=(64, 33)).astype(dtype)
    a = float(ops.convert_to_numpy(ours()(ops.convert_to_tensor(x))))
    b = float(ops.convert_to_numpy(theirs()(ops.convert_to_tensor(x))))
    assert abs(a - b) <= 1e-6 * abs(b)
    assert a >= 0.0


def test_penalty_closed_form():
    x = np.array([[-1.0, 2.0], [0.5, -3.0]], "float32")
    l1 = np.abs(x).sum()
    l2 = np.square(x).sum()
    assert float(regularizers.L1(0.5)(x)) == pytest.approx(0.5 * l1)
    assert float(regularizers.L2(0.25)(x)) == pytest.approx(0.25 * l2)
    assert float(regularizers.ElasticNet(0.5, 0.25)(x)) == pytest.approx(
        0.5 * l1 + 0.25 * l2
    )


@pytest.mark.parametrize("l1,l2", [(1e-30, 1e10), (1e10, 1e-30), (0.0, 1e10)])
def test_extreme_strength_ratios_step_like_numpy(l1, l2):
    # One SGD step with zero data loss moves the kernel by exactly
    # lr * (l1 * sign(w) + 2 * l2 * w): no overflow from the strengths' ratio.
    w0 = np.array([[0.5, -0.25], [-0.0625, 0.125]], "float32")
    lr = 1e-12
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        2, use_bias=False, kernel_initializer=keras.initializers.Constant(w0),
        kernel_regularizer=regularizers.ElasticNet(l1, l2))])
    model.compile(keras.optimizers.SGD(lr), "mse")
    history = model.fit(np.zeros((4, 2), "float32"), np.zeros((4, 2), "float32"),
                        batch_size=4, epochs=1, verbose=0)
    w64 = w0.astype("float64")
    expected_loss = l1 * np.abs(w64).sum() + l2 * np.square(w64).sum()
    expected_kernel = w64 - lr * (l1 * np.sign(w64) + 2 * l2 * w64)
    assert history.history["loss"][0] == pytest.approx(expected_loss, rel=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(model.layers[0].kernel), expected_kernel, rtol=1e-6)


def _mlp(kernel_regularizer, bias_regularizer):
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((10,))]
        + [
            keras.layers.Dense(
                16,
                activation="tanh",
                kernel_regularizer=kernel_regularizer(),
                bias_regularizer=bias_regularizer(),
            )
            for _ in range(3)
        ]
        + [keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=PAIR_IDS)
def test_training_trajectory_equals_keras(ours, theirs):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 10)).astype("float32")
    y = rng.normal(size=(128, 1)).astype("float32")
    ours_model = _mlp(ours, ours)
    theirs_model = _mlp(theirs, theirs)
    for a, b in zip(ours_model.get_weights(), theirs_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    h1 = ours_model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
    h2 = theirs_model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-6)
    for a, b in zip(ours_model.get_weights(), theirs_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


SCHEDULED_PAIRS = {
    "L1": (lambda s: regularizers.L1(s(0.013)), lambda: keras.regularizers.L1(0.013)),
    "L2": (lambda s: regularizers.L2(s(0.021)), lambda: keras.regularizers.L2(0.021)),
    "ElasticNet": (
        lambda s: regularizers.ElasticNet(s(0.013), s(0.021)),
        lambda: keras.regularizers.L1L2(0.013, 0.021),
    ),
    "ElasticNet-l1-scheduled": (
        lambda s: regularizers.ElasticNet(s(0.013), 0.021),
        lambda: keras.regularizers.L1L2(0.013, 0.021),
    ),
    "ElasticNet-l2-scheduled": (
        lambda s: regularizers.ElasticNet(0.013, s(0.021)),
        lambda: keras.regularizers.L1L2(0.013, 0.021),
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULED_PAIRS))
def test_scheduled_training_trajectory_equals_keras(name):
    # A schedule that stays at Keras' constant: strengths read from variables
    # (tensors in the step, not floats) must give the same penalty gradient,
    # including at the zero-initialized biases where sign(0) = 0.
    ours, theirs = SCHEDULED_PAIRS[name]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 10)).astype("float32")
    y = rng.normal(size=(128, 1)).astype("float32")
    ours_model = _mlp(lambda: ours(schedules.Constant), lambda: ours(schedules.Constant))
    theirs_model = _mlp(theirs, theirs)
    h1 = ours_model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False,
                        callbacks=[kr.callbacks.RegularizationScheduler()])
    h2 = theirs_model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-6)
    ours_weights, theirs_weights = ours_model.trainable_weights, theirs_model.trainable_weights
    assert len(ours_weights) == len(theirs_weights) == 8
    for a, b in zip(ours_weights, theirs_weights):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-6, atol=1e-7)


def test_constant_strength_adds_no_state():
    reg = regularizers.ElasticNet(0.1, 0.2)
    layer = keras.layers.Dense(3, kernel_regularizer=reg)
    layer.build((None, 4))
    assert reg.weights == [] and reg.scheduled_hyperparameters == ()
    assert len(layer.weights) == 2


def test_scheduled_strength_is_model_state():
    reg = regularizers.L1(schedules.Linear(0.0, 1.0, end_step=10), name="ramp")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, kernel_regularizer=reg)]
    )
    # The strength must be part of the state a compiled (JAX) step receives.
    assert [v.path for v in model.non_trainable_variables] == ["ramp/l1"]
    assert reg.scheduled_hyperparameters == ("l1",)
    assert model.count_params() == 4 * 3 + 3 + 1


def test_scheduled_penalty_follows_strength_variable():
    reg = regularizers.ElasticNet(
        l1=schedules.Linear(0.0, 1.0, end_step=10), l2=0.5
    )
    x = np.ones((2, 2), "float32")
    assert float(reg(x)) == pytest.approx(0.5 * 4)  # l1 at step 0 is 0
    reg.l1.assign(0.25)
    assert float(reg(x)) == pytest.approx(0.25 * 4 + 0.5 * 4)


def test_unscheduled_fit_warns():
    reg = regularizers.L2(schedules.Linear(0.0, 1.0, end_step=10), name="forgotten")
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(1, kernel_regularizer=reg)]
    )
    model.compile("sgd", "mse")
    with pytest.warns(UserWarning, match="forgotten.*RegularizationScheduler"):
        model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)


def all_regularizers():
    cosine = keras.optimizers.schedules.CosineDecay(1e-3, 100)
    return [
        regularizers.L1(0.02),
        regularizers.L1(schedules.Linear(0.0, 1e-3, begin_step=2, end_step=9)),
        regularizers.L2(cosine),
        regularizers.ElasticNet(0.0, 0.03),
        regularizers.ElasticNet(
            schedules.Join(
                [schedules.Linear(0.0, 1e-3, end_step=5), schedules.Cosine(1e-3, 0.0, end_step=20)],
                boundaries=[5],
            ),
            schedules.PiecewiseConstant([4], [1e-4, 2e-4]),
        ),
        regularizers.L1(0.01, proximal=True),
        regularizers.ElasticNet(schedules.Linear(0.0, 1e-3, end_step=9), 1e-3, proximal=True),
        regularizers.GroupLasso(0.01),
        regularizers.GroupLasso(schedules.Linear(0.0, 1e-2, end_step=9), axis=0),
    ]


@pytest.mark.parametrize("reg", all_regularizers(), ids=lambda r: r.name)
def test_config_round_trip(reg):
    config = keras.regularizers.serialize(reg)
    assert config["registered_name"] == f"keras_regx>{type(reg).__name__}"
    json.dumps(config)
    restored = keras.regularizers.deserialize(config)
    assert type(restored) is type(reg)
    assert restored.get_config() == reg.get_config()
    assert type(reg).from_config(reg.get_config()).get_config() == reg.get_config()
    x = np.random.default_rng(0).normal(size=(5, 5)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(reg(x)), rtol=1e-6
    )


def _model_with(reg):
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(4, kernel_regularizer=reg, bias_regularizer=reg),
            keras.layers.Dense(2, activity_regularizer=regularizers.L2(1e-3)),
        ]
    )
    model.compile("adam", "mse")
    return model


@pytest.mark.parametrize("reg", all_regularizers(), ids=lambda r: r.name)
def test_clone_model_and_json(reg):
    model = _model_with(reg)
    clone = keras.models.clone_model(model)
    from_json = keras.models.model_from_json(model.to_json())
    for other in (clone, from_json):
        got = other.layers[0].kernel_regularizer
        assert type(got) is type(reg) and got is not reg
        assert got.get_config() == reg.get_config()
        assert other.layers[0].bias_regularizer.get_config() == reg.get_config()
        x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
        # clone_model gives kernel and bias each their own regularizer, so the
        # weight lists differ in length: copy the dense weights one by one.
        for src, dst in zip(model.layers, other.layers):
            dst.kernel.assign(src.kernel)
            dst.bias.assign(src.bias)
        other(x)
        model(x)
        with warnings.catch_warnings():
            # Reading `losses` outside fit() warns that no scheduler drives
            # the scheduled strengths; that is expected here.
            warnings.simplefilter("ignore", UserWarning)
            np.testing.assert_allclose(
                [float(ops.convert_to_numpy(loss)) for loss in other.losses],
                [float(ops.convert_to_numpy(loss)) for loss in model.losses],
                rtol=1e-6,
            )


def test_keras_file_loads_in_fresh_process(tmp_path):
    regs = all_regularizers()
    inputs = keras.Input((6,))
    h = inputs
    for i, reg in enumerate(regs):
        h = keras.layers.Dense(4, kernel_regularizer=reg, name=f"dense_{i}")(h)
    model = keras.Model(inputs, h)
    model.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    model.fit(x, np.zeros((8, 4)), verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])
    regs[1].l1.assign(0.123)  # a mid-schedule strength is saved with the model
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    expected = {
        "losses": [float(ops.convert_to_numpy(v)) for v in model.losses],
        "configs": [r.get_config() for r in regs],
        "pred": ops.convert_to_numpy(model(x)).tolist(),
    }
    got = run_python(
        """
        import json, keras, numpy as np
        import keras_regx
        model = keras.models.load_model("m.keras", safe_mode=True)
        x = np.load("x.npy")
        pred = keras.ops.convert_to_numpy(model(x)).tolist()
        regs = [model.get_layer(layer.name).kernel_regularizer
                for layer in model.layers[1:]]
        print(json.dumps({
            "losses": [float(keras.ops.convert_to_numpy(v)) for v in model.losses],
            "configs": [r.get_config() for r in regs],
            "types": [type(r).__module__ for r in regs],
            "pred": pred,
            "l1": float(keras.ops.convert_to_numpy(regs[1].l1)),
        }))
        """,
        tmp_path,
    )
    assert got["types"] == ["keras_regx.regularizers"] * len(regs)
    assert got["configs"] == json.loads(json.dumps(expected["configs"]))
    assert got["l1"] == pytest.approx(0.123)
    np.testing.assert_allclose(got["losses"], expected["losses"], rtol=1e-6)
    np.testing.assert_allclose(got["pred"], expected["pred"], rtol=1e-6)


BAD = [
    (regularizers.L1, dict(l1=-0.1), ValueError, r"`l1`.*>= 0.*-0.1"),
    (regularizers.L1, dict(l1=float("nan")), ValueError, r"`l1`.*finite.*nan"),
    (regularizers.L2, dict(l2=float("inf")), ValueError, r"`l2`.*finite.*inf"),
    (regularizers.L2, dict(l2="0.01"), TypeError, r"`l2`.*float or a schedule.*'0.01'.*str"),
    (regularizers.GroupLasso, dict(factor=None), TypeError, r"`factor`.*NoneType"),
    (regularizers.L1, dict(l1=True), TypeError, r"`l1`.*bool"),
    (regularizers.ElasticNet, dict(l1=0.1, l2=-1), ValueError, r"`l2`.*>= 0"),
    (regularizers.ElasticNet, dict(l1=[0.1], l2=0.1), TypeError, r"`l1`.*list"),
    (regularizers.ElasticNet, dict(l1=lambda step: 0.1, l2=0.1), TypeError, r"`l1`.*function"),
    (regularizers.L1, dict(proximal="yes"), TypeError, r"`proximal`.*bool.*'yes'"),
    (regularizers.ElasticNet, dict(proximal=1), TypeError, r"`proximal`.*bool.*1"),
    (regularizers.GroupLasso, dict(factor=-1.0), ValueError, r"`factor`.*>= 0"),
    (regularizers.GroupLasso, dict(axis=1.5), TypeError, r"`axis`.*integer.*1.5"),
    (regularizers.GroupLasso, dict(axis=True), TypeError, r"`axis`.*integer.*True"),
    (regularizers.GroupLasso, dict(proximal=None), TypeError, r"`proximal`.*bool.*None"),
]


@pytest.mark.parametrize("cls,kwargs,exc,match", BAD)
def test_bad_input_is_refused_at_construction(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kwargs)


def test_bad_config_is_refused_on_load():
    config = keras.regularizers.serialize(regularizers.L1(0.1))
    config["config"]["l1"] = -3.0
    with pytest.raises(ValueError, match="`l1`"):
        keras.regularizers.deserialize(config)


GROUPS = [
    ((5, 3), 0, lambda w: np.sqrt((w**2).sum(axis=1))),  # Dense: input rows
    ((5, 3), -1, lambda w: np.sqrt((w**2).sum(axis=0))),  # Dense: units
    ((3, 3, 4, 6), -1, lambda w: np.sqrt((w**2).sum(axis=(0, 1, 2)))),  # Conv2D: filters
    ((3, 3, 4, 6), -2, lambda w: np.sqrt((w**2).sum(axis=(0, 1, 3)))),  # Conv2D: in channels
    ((7,), 0, np.abs),  # a bias: each entry is a group, i.e. L1
]


@pytest.mark.parametrize("shape,axis,norms", GROUPS, ids=["rows", "units", "filters", "channels", "bias"])
def test_group_lasso_penalty_closed_form(shape, axis, norms):
    w = np.random.default_rng(0).normal(size=shape).astype("float32")
    w[..., 0] = 0.0  # an all-zero unit or filter counts 0
    got = float(ops.convert_to_numpy(regularizers.GroupLasso(0.3, axis=axis)(w)))
    assert got == pytest.approx(0.3 * norms(w.astype("float64")).sum(), rel=1e-6)
    assert got >= 0.0


def test_group_lasso_gradient_at_an_all_zero_group_is_zero():
    # sqrt'(0) is infinite; the penalty takes the subgradient 0 there, so a
    # zero-initialized kernel trains without NaNs.
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = x @ np.ones((4, 2), "float32")
    dense = keras.layers.Dense(2, kernel_initializer="zeros",
                               kernel_regularizer=regularizers.GroupLasso(0.1, axis=0))
    model = keras.Sequential([keras.Input((4,)), dense])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    no_penalty = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_initializer="zeros")])
    no_penalty.compile(keras.optimizers.SGD(0.1), "mse")
    no_penalty.fit(x, y, batch_size=16, epochs=1, verbose=0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(dense.kernel), ops.convert_to_numpy(no_penalty.layers[0].kernel),
        rtol=1e-6,
    )


def test_group_lasso_axis_the_weight_lacks_is_refused():
    with pytest.raises(ValueError, match=r"`axis` of `GroupLasso`.*\[-2, 2\).*\(5, 3\).*axis=-3"):
        regularizers.GroupLasso(0.1, axis=-3)(np.ones((5, 3), "float32"))


@pytest.mark.parametrize("make", [
    lambda: regularizers.L1(0.1), lambda: regularizers.L2(0.1),
    lambda: regularizers.ElasticNet(0.1, 0.1), lambda: regularizers.GroupLasso(0.1),
    lambda: regularizers.GroupLasso(0.1, axis=0), lambda: regularizers.GroupLasso(0.1, proximal=True),
], ids=["l1", "l2", "enet", "group-units", "group-rows", "group-proximal"])
def test_nan_weights_give_a_nan_penalty(make):
    # Keras' penalties are NaN for NaN weights; ours must not hide them.
    w = np.ones((3, 2), "float32")
    w[1, 1] = np.nan
    assert np.isnan(float(ops.convert_to_numpy(keras.regularizers.L1(0.1)(w))))
    assert np.isnan(float(ops.convert_to_numpy(make()(w))))


def test_proximal_penalty_counts_in_the_loss_but_not_in_the_gradient():
    # One SGD step without the proximal step (no scheduler: it warns): the
    # weights move by the data gradient alone, the loss includes the penalty.
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.zeros((16, 1), "float32")
    w0 = np.full((4, 1), 0.5, "float32")

    def fit(regularizer):
        dense = keras.layers.Dense(1, use_bias=False, kernel_regularizer=regularizer,
                                   kernel_initializer=keras.initializers.Constant(w0))
        model = keras.Sequential([keras.Input((4,)), dense])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        return history.history["loss"][0], ops.convert_to_numpy(dense.kernel)

    for regularizer, penalty in [
        (regularizers.L1(0.2, proximal=True), 0.2 * 2.0),
        (regularizers.ElasticNet(0.2, 0.0, proximal=True), 0.2 * 2.0),
        (regularizers.GroupLasso(0.2, axis=0, proximal=True), 0.2 * 2.0),
    ]:
        with pytest.warns(UserWarning, match="proximal=True but no"):
            loss, kernel = fit(regularizer)
        plain_loss, plain_kernel = fit(None)
        assert loss == pytest.approx(plain_loss + penalty, rel=1e-5)
        np.testing.assert_allclose(kernel, plain_kernel, rtol=1e-6)


# Properties over random strengths and weights (hypothesis).

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)
STRENGTHS = st.one_of(st.just(0.0), st.floats(1e-6, 10.0))
# Normal float32 entries (TensorFlow flushes subnormal ones to zero).
ENTRIES = st.one_of(
    st.just(0.0), st.floats(2**-20, 1e3, width=32), st.floats(-1e3, -(2**-20), width=32)
)
WEIGHTS = hnp.arrays("float32", hnp.array_shapes(min_dims=1, max_dims=4, max_side=4),
                     elements=ENTRIES)
SCALES = st.one_of(st.floats(1e-3, 1e2), st.floats(-1e2, -1e-3))


def penalty(regularizer, x):
    return float(ops.convert_to_numpy(regularizer(x)))


@st.composite
def penalty_cases(draw, name):
    """A regularizer `name`, weights, its parts with their degrees, and its formula.

    Each strength is a float or, at random, a constant schedule (a float32
    variable then holds it).
    """
    x = draw(WEIGHTS)
    w = x.astype("float64")
    proximal = draw(st.booleans())

    def strength():
        value = draw(STRENGTHS)
        if draw(st.booleans()):
            return schedules.Constant(value), float(np.float32(value))
        return value, value

    if name == "L2":
        (l2, s2) = strength()
        reg = regularizers.L2(l2)
        return reg, x, [(reg, 2)], s2 * np.square(w).sum()
    if name == "GroupLasso":
        (factor, s1), axis = strength(), draw(st.integers(-x.ndim, x.ndim - 1))
        reg = regularizers.GroupLasso(factor, axis=axis, proximal=proximal)
        others = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
        return reg, x, [(reg, 1)], s1 * np.sqrt(np.square(w).sum(axis=others)).sum()
    (l1, s1) = strength()
    if name == "L1":
        reg = regularizers.L1(l1, proximal=proximal)
        return reg, x, [(reg, 1)], s1 * np.abs(w).sum()
    (l2, s2) = strength()
    reg = regularizers.ElasticNet(l1, l2, proximal=proximal)
    parts = [(regularizers.ElasticNet(l1, 0.0, proximal=proximal), 1),
             (regularizers.ElasticNet(0.0, l2, proximal=proximal), 2)]
    return reg, x, parts, s1 * np.abs(w).sum() + s2 * np.square(w).sum()


@pytest.mark.parametrize("name", ["L1", "L2", "ElasticNet", "GroupLasso"])
@PROPERTY
@given(data=st.data())
def test_penalty_properties(name, data):
    """Non-negative, zero at zero, homogeneous of its degree, its numpy formula."""
    reg, x, parts, expected = data.draw(penalty_cases(name))
    c = data.draw(SCALES)
    note(f"{name}: {reg.get_config()}, shape {x.shape}")
    value = penalty(reg, x)
    assert math.isfinite(value) and value >= 0.0
    assert penalty(reg, np.zeros_like(x)) == 0.0
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-30)
    cx = (c * x.astype("float64")).astype("float32")
    for part, degree in parts:
        np.testing.assert_allclose(penalty(part, cx), abs(c) ** degree * penalty(part, x),
                                   rtol=3e-5, atol=1e-30, err_msg=f"degree {degree}")
    np.testing.assert_allclose(value, sum(penalty(part, x) for part, _ in parts),
                               rtol=1e-5, atol=1e-30)


# Hostile files: `.keras` archives built by hand whose configs carry code or
# bad values. Loading with safe_mode=True must refuse them with an error that
# names the problem, and never run the code (the lambda would create a file).
def _hostile_archive(tmp_path, mutate):
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(2, name="d", kernel_regularizer=regularizers.L1(
            schedules.Linear(0.0, 0.1, end_step=5))),
        kr.layers.ScheduledDropout(0.2, name="drop"),
    ])
    model.save(tmp_path / "ok.keras")
    with zipfile.ZipFile(tmp_path / "ok.keras") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    layers = {layer["config"]["name"]: layer["config"] for layer in config["config"]["layers"]}
    mutate(layers["d"]["kernel_regularizer"]["config"], layers["drop"])
    path = tmp_path / "hostile.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, json.dumps(config) if name == "config.json" else data)
    return path


def _lambda_config(marker):
    code = (lambda step: open(marker, "w").close() or 0.1).__code__
    return {"class_name": "__lambda__", "config": {
        "code": base64.b64encode(marshal.dumps(code)).decode(), "defaults": None, "closure": None}}


HOSTILE = [
    ("lambda strength", lambda reg, drop, lam: reg.__setitem__("l1", lam),
     r"lambda.*safe_mode"),
    ("lambda inside a schedule", lambda reg, drop, lam: reg["l1"]["config"].__setitem__("initial_value", lam),
     r"`initial_value`: expected a float.*__lambda__"),
    ("unknown class", lambda reg, drop, lam: reg.__setitem__(
        "l1", {"module": "evil", "class_name": "Evil", "config": {}, "registered_name": "evil>Evil"}),
     r"Evil"),
    ("a function by module path", lambda reg, drop, lam: reg.__setitem__(
        "l1", {"module": "os", "class_name": "function", "config": "system", "registered_name": "system"}),
     r"system"),
    ("wrong type", lambda reg, drop, lam: reg.__setitem__("l1", "0.1"),
     r"`l1`: expected a float or a schedule.*'0.1'"),
    ("out of range in a schedule", lambda reg, drop, lam: reg["l1"]["config"].__setitem__("final_value", -1.0),
     r"`final_value`: expected a float >= 0"),
    ("bad step", lambda reg, drop, lam: reg["l1"]["config"].__setitem__("end_step", -3),
     r"`end_step`: expected an integer >= 0"),
    ("proximal not a bool", lambda reg, drop, lam: reg.__setitem__("proximal", "yes"),
     r"`proximal`: expected a bool"),
    ("dropout rate out of range", lambda reg, drop, lam: drop.__setitem__("rate", 1.5),
     r"`rate`: expected a float >= 0.0 and < 1.0"),
    ("dropout rate of the wrong type", lambda reg, drop, lam: drop.__setitem__("rate", [0.1]),
     r"`rate`: expected a float or a schedule"),
    ("unknown argument", lambda reg, drop, lam: drop.__setitem__("evil", 1),
     r"Unrecognized keyword arguments.*evil"),
]


@pytest.mark.parametrize("loading", [False, True])
def test_a_strength_nested_too_deep_is_refused_by_name(loading):
    # The regularizer keys its config for sharing while a file loads; a
    # config too deep to walk must still reach the schedules' clear error.
    from keras.src.saving.serialization_lib import ObjectSharingScope

    config = {"l1": _nested_join(250), "proximal": False, "name": "deep"}
    with ObjectSharingScope() if loading else contextlib.nullcontext():
        with pytest.raises(ValueError, match=r"`schedules`: expected Joins nested at most 32 deep"):
            regularizers.L1.from_config(config)


def _nested_join(depth):
    """The config of a Join nested `depth` deep: too deep to walk recursively."""
    config = keras.saving.serialize_keras_object(schedules.Constant(0.1))
    for _ in range(depth):
        config = {"module": "keras_regx.schedules", "class_name": "Join",
                  "registered_name": "keras_regx>Join",
                  "config": {"schedules": [config, keras.saving.serialize_keras_object(
                      schedules.Constant(0.1))], "boundaries": [5]}}
    return config


@pytest.mark.parametrize("case,mutate,match", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_keras_file_is_refused_without_running_code(tmp_path, case, mutate, match):
    marker = tmp_path / "code_ran"
    lam = _lambda_config(str(marker))
    path = _hostile_archive(tmp_path, lambda reg, drop: mutate(reg, drop, lam))
    with pytest.raises((TypeError, ValueError), match=match):
        keras.models.load_model(path, safe_mode=True)
    assert not marker.exists()


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_l2_reaches_sklearn_ridge(jit_compile):
    # mse + l2 * |w|^2 is 1/n times Ridge's |y - Xw|^2 + alpha |w|^2 at alpha = n * l2.
    from sklearn import linear_model

    x, y = diabetes()
    l2 = 0.05
    reference = linear_model.Ridge(alpha=len(x) * l2).fit(x, y[:, 0])
    optimizer = keras.optimizers.SGD(1.0 / (mse_lipschitz(x) + 2 * l2))
    kernel = fit_full_batch(x, y, regularizers.L2(l2), optimizer, 500, jit_compile=jit_compile)
    assert relative_error(kernel[:, 0], reference.coef_) <= 1e-3


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_penalties_stay_float32_under_mixed_precision(policy):
    # The weights of a mixed precision layer are float32, and so are the
    # penalties: a strength of 1e-9 is not lost to 16-bit rounding.
    w = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    expected = {}
    keras.mixed_precision.set_global_policy(policy)
    try:
        for reg in (regularizers.L1(1e-9), regularizers.L2(1e-9),
                    regularizers.ElasticNet(1e-9, 1e-9), regularizers.GroupLasso(1e-9)):
            dense = keras.layers.Dense(4, kernel_regularizer=reg)
            dense.build((None, 8))
            dense.kernel.assign(w)
            (loss,) = dense.losses
            assert keras.backend.standardize_dtype(loss.dtype) == "float32"
            assert dense.compute_dtype != "float32"
            expected[type(reg).__name__] = (float(ops.convert_to_numpy(loss)), reg)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for name, (got, reg) in expected.items():
        assert got > 0.0
        assert got == pytest.approx(float(ops.convert_to_numpy(reg(w))), rel=1e-6), name
