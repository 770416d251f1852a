import json
import warnings

import keras
import numpy as np
import pytest
from conftest import run_python
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
    (regularizers.L1, dict(l1=None), TypeError, r"`l1`.*NoneType"),
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
