"""Proximal regularizers: scikit-learn's solutions, exact zeros, each optimizer's step.

Scaling between Keras' loss and scikit-learn's objectives (tests/conftest.py's
`diabetes()`; n samples, k outputs, Keras' "mse" is the mean over both):
`mse + l1 * |w|_1` is twice Lasso's objective at `alpha = l1 / 2`;
`mse + l1 * |w|_1 + l2 * |w|^2` is twice ElasticNet's at `alpha = l1 / 2 + l2`,
`l1_ratio = (l1 / 2) / alpha`; `mse + factor * sum_rows |w_row|` is `2 / k`
times MultiTaskLasso's at `alpha = factor * k / 2`.
"""

import keras
import numpy as np
import pytest
from conftest import BACKEND
from conftest import diabetes
from conftest import fit_full_batch
from conftest import jit_compile_options
from conftest import mse_lipschitz
from conftest import relative_error
from conftest import run_python
from keras import ops
from sklearn import linear_model

import keras_regx as kr
from keras_regx import _proximal

LR_SCHEDULES = keras.optimizers.schedules

# name -> (optimizer factory given 1/L, full-batch steps to converge)
OPTIMIZERS = {
    "sgd": (lambda lr: keras.optimizers.SGD(lr), 500),
    "momentum": (lambda lr: keras.optimizers.SGD(lr / 2, momentum=0.5), 500),
    "nesterov": (lambda lr: keras.optimizers.SGD(lr / 2, momentum=0.5, nesterov=True), 500),
    "adam": (lambda lr: keras.optimizers.Adam(LR_SCHEDULES.CosineDecay(0.02, 1000)), 1000),
    "amsgrad": (
        lambda lr: keras.optimizers.Adam(LR_SCHEDULES.CosineDecay(0.02, 1000), amsgrad=True),
        1000,
    ),
    "rmsprop": (lambda lr: keras.optimizers.RMSprop(LR_SCHEDULES.CosineDecay(0.01, 1000)), 1000),
    # Momentum carries earlier steps, so the threshold lr / (1 - momentum)
    # is exact at a constant learning rate. (Centered RMSprop is checked step
    # by step below: on full-batch gradients its variance estimate vanishes.)
    "rmsprop-momentum": (lambda lr: keras.optimizers.RMSprop(0.002, momentum=0.5), 1000),
    "adagrad": (lambda lr: keras.optimizers.Adagrad(0.5), 500),
}


def _reference(estimator, x, y):
    """`estimator` fitted in float64, where its tolerance is reachable.

    The training data stay float32 for keras_regx; scikit-learn's solvers
    stop on a duality gap that float32 round-off alone can exceed (recent
    releases warn then), so the reference solves the same data in float64.
    """
    return estimator.fit(np.asarray(x, "float64"), np.asarray(y, "float64")).coef_


def _assert_same_solution(got, expected):
    assert relative_error(got, expected) <= 1e-3
    np.testing.assert_array_equal(got == 0.0, expected == 0.0)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_l1_reaches_sklearn_lasso(name):
    x, y = diabetes()
    make_optimizer, steps = OPTIMIZERS[name]
    optimizer = make_optimizer(1.0 / mse_lipschitz(x))
    lasso = _reference(
        linear_model.Lasso(alpha=0.05 / 2, tol=1e-12, max_iter=100_000), x, y[:, 0]
    )
    assert 0 < np.count_nonzero(lasso) < x.shape[1]  # a sparse solution
    kernel = fit_full_batch(x, y, kr.L1(0.05, proximal=True), optimizer, steps)
    _assert_same_solution(kernel[:, 0], lasso)


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_elastic_net_reaches_sklearn_elastic_net(jit_compile):
    x, y = diabetes()
    l1, l2 = 0.06, 0.02
    alpha = l1 / 2 + l2
    reference = _reference(
        linear_model.ElasticNet(
            alpha=alpha, l1_ratio=(l1 / 2) / alpha, tol=1e-12, max_iter=100_000
        ),
        x,
        y[:, 0],
    )
    assert 0 < np.count_nonzero(reference) < x.shape[1]
    optimizer = keras.optimizers.SGD(1.0 / (mse_lipschitz(x) + 2 * l2))
    regularizer = kr.ElasticNet(l1=l1, l2=l2, proximal=True)
    kernel = fit_full_batch(x, y, regularizer, optimizer, 500, jit_compile=jit_compile)
    _assert_same_solution(kernel[:, 0], reference)


def test_group_lasso_reaches_sklearn_multi_task_lasso():
    # Three informative inputs out of twelve, four outputs: the input rows of
    # the kernel are the groups.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)).astype("float32")
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = x[:, :3] @ rng.normal(size=(3, 4)) + 0.5 * rng.normal(size=(300, 4))
    y = (y - y.mean(axis=0)).astype("float32")
    factor, outputs = 0.1, y.shape[1]
    reference = _reference(
        linear_model.MultiTaskLasso(alpha=factor * outputs / 2, tol=1e-10, max_iter=100_000),
        x,
        y,
    )
    optimizer = keras.optimizers.SGD(outputs / mse_lipschitz(x))  # mse averages k outputs
    regularizer = kr.GroupLasso(factor, axis=0, proximal=True)
    kernel = fit_full_batch(x, y, regularizer, optimizer, 500)
    _assert_same_solution(kernel, reference.T)
    rows = np.abs(kernel).sum(axis=1)
    assert (rows[:3] > 0).all() and (rows[3:] == 0).all()


def test_group_lasso_keeps_informative_inputs_of_a_network():
    # A hidden layer with group lasso on its input rows learns which inputs
    # matter: the rows of the seven uninformative inputs become exactly zero.
    # Full batches (the same initial weights on every backend) make the run
    # deterministic; with minibatches rows near zero hop in and out.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2048, 10)).astype("float32")
    y = (np.sin(x[:, 0]) + x[:, 1] * x[:, 2]).astype("float32")[:, None]
    init = rng.normal(scale=0.3, size=(10, 16)).astype("float32")
    dense = keras.layers.Dense(
        16, activation="tanh", kernel_initializer=keras.initializers.Constant(init),
        kernel_regularizer=kr.GroupLasso(0.02, axis=0, proximal=True),
    )
    head = keras.layers.Dense(1, kernel_initializer=keras.initializers.Constant(
        rng.normal(scale=0.3, size=(16, 1)).astype("float32")))
    model = keras.Sequential([keras.Input((10,)), dense, head])
    per_execution = 1 if BACKEND == "torch" else 10
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse",
                  steps_per_execution=per_execution)
    model.fit(np.tile(x, (10, 1)), np.tile(y, (10, 1)), batch_size=len(x), epochs=60,
              shuffle=False, verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])
    rows = np.abs(ops.convert_to_numpy(dense.kernel)).sum(axis=1)
    assert (rows[:3] > 0.5).all()
    np.testing.assert_array_equal(rows[3:], 0.0)


def _numpy_steps(name, x, y, w, l1_at, steps, lr):
    """Kernels after each of `steps` full-batch updates, then soft-thresholds."""
    n = len(x)
    m, v, v_max, mean = (np.zeros_like(w) for _ in range(4))
    accumulator = np.full_like(w, 0.1)
    kernels = []
    for t in range(steps):
        g = 2.0 / n * x.T @ (x @ w - y)
        if name == "sgd":
            w, size = w - lr * g, lr
        elif name in ("momentum", "nesterov"):
            m = 0.9 * m - lr * g
            w = w + (0.9 * m - lr * g if name == "nesterov" else m)
            size = lr / (1 - 0.9)
        elif name in ("adam", "amsgrad"):
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g**2
            v_max = np.maximum(v_max, v)
            alpha = lr * np.sqrt(1 - 0.999 ** (t + 1)) / (1 - 0.9 ** (t + 1))
            size = alpha / (np.sqrt(v_max if name == "amsgrad" else v) + 1e-7)
            w = w - m * size
        elif name == "rmsprop":  # centered, momentum 0.5
            v = 0.9 * v + 0.1 * g**2
            mean = 0.9 * mean + 0.1 * g
            size = lr / np.sqrt(v - mean**2 + 1e-7)
            m = 0.5 * m + size * g
            w, size = w - m, size / (1 - 0.5)
        elif name == "adagrad":
            accumulator = accumulator + g**2
            size = lr / np.sqrt(accumulator + 1e-7)
            w = w - size * g
        threshold = size * l1_at(t)
        w = np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)
        kernels.append(w)
    return kernels


STEP_OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.05),
    "momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(0.05),
    "amsgrad": lambda: keras.optimizers.Adam(0.05, amsgrad=True),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.05, centered=True, momentum=0.5),
    "adagrad": lambda: keras.optimizers.Adagrad(0.05),
}


def _linear_problem():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 6)).astype("float32")
    w0 = np.array([[0.8], [-0.6], [0.05], [-0.03], [0.4], [0.01]], "float32")
    y = (x @ np.array([[1.0], [-1.0], [0.0], [0.0], [0.3], [0.0]])).astype("float32")
    return x, y, w0


def _step_model(w0, regularizer, optimizer, jit_compile="auto"):
    model = keras.Sequential(
        [
            keras.Input((w0.shape[0],)),
            keras.layers.Dense(
                1,
                use_bias=False,
                kernel_regularizer=regularizer,
                kernel_initializer=keras.initializers.Constant(w0),
            ),
        ]
    )
    model.compile(optimizer, "mse", jit_compile=jit_compile)
    return model


class _Kernels(keras.callbacks.Callback):
    """The first layer's kernel at each epoch end (one step per epoch)."""

    def on_train_begin(self, logs=None):
        self.kernels = []

    def on_epoch_end(self, epoch, logs=None):
        self.kernels.append(ops.convert_to_numpy(self.model.layers[0].kernel))


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("name", list(STEP_OPTIMIZERS))
def test_each_step_soft_thresholds_by_the_optimizers_step(name, jit_compile):
    # A scheduled strength, so the threshold of every step is different.
    x, y, w0 = _linear_problem()
    schedule = kr.schedules.Linear(0.02, 0.3, end_step=5)
    model = _step_model(w0, kr.L1(schedule, proximal=True), STEP_OPTIMIZERS[name](), jit_compile)
    record = _Kernels()
    history = model.fit(x, y, batch_size=len(x), epochs=6, shuffle=False, verbose=0,
                        callbacks=[kr.callbacks.RegularizationScheduler(), record])
    expected = _numpy_steps(name, x, y, w0, schedule.value_at, 6, lr=0.05)
    for got, want in zip(record.kernels, expected):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
        np.testing.assert_array_equal(got == 0.0, want == 0.0)
    assert (expected[-1] == 0.0).any()  # the test reaches exact zeros
    # The reported loss is the data loss plus the L1 penalty's value.
    weights = [w0] + expected[:-1]
    losses = [
        np.mean((x @ w - y) ** 2) + schedule.value_at(t) * np.abs(w).sum()
        for t, w in enumerate(weights)
    ]
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)


def test_thresholds_only_on_the_steps_that_update_with_gradient_accumulation():
    x, y, w0 = _linear_problem()
    optimizer = keras.optimizers.SGD(0.05, gradient_accumulation_steps=2)
    model = _step_model(w0, kr.L1(0.2, proximal=True), optimizer)
    record = _Kernels()
    model.fit(x, y, batch_size=len(x), epochs=4, shuffle=False, verbose=0,
              callbacks=[kr.callbacks.RegularizationScheduler(), record])
    updates = _numpy_steps("sgd", x, y, w0, lambda t: 0.2, 2, lr=0.05)
    for got, want in zip(record.kernels, [w0, updates[0], updates[0], updates[1]]):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_proximal_l1_makes_exact_zeros_where_keras_l1_does_not():
    x, y = diabetes()
    optimizer = keras.optimizers.SGD(1.0 / mse_lipschitz(x))
    ours = fit_full_batch(x, y, kr.L1(0.05, proximal=True), optimizer, 500)
    optimizer = keras.optimizers.SGD(1.0 / mse_lipschitz(x))
    keras_l1 = fit_full_batch(x, y, keras.regularizers.L1(0.05), optimizer, 500)
    assert np.count_nonzero(ours == 0.0) == 3
    assert np.count_nonzero(keras_l1 == 0.0) == 0
    # Keras' subgradient hovers around zero where the proximal step sits at it.
    assert np.abs(keras_l1[ours == 0.0]).max() > 0.0


def test_layer_constraint_runs_after_the_proximal_step():
    x, y, w0 = _linear_problem()
    dense = keras.layers.Dense(
        1, use_bias=False, kernel_initializer=keras.initializers.Constant(w0),
        kernel_regularizer=kr.L1(0.05, proximal=True),
        kernel_constraint=keras.constraints.NonNeg(),
    )
    model = keras.Sequential([keras.Input((6,)), dense])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(x, y, batch_size=len(x), epochs=3, verbose=0,
              callbacks=[kr.callbacks.RegularizationScheduler()])
    kernel = ops.convert_to_numpy(dense.kernel)
    assert (kernel >= 0.0).all() and (kernel == 0.0).any()
    installed = dense.kernel.constraint
    assert isinstance(installed, _proximal.ProximalStep)
    assert isinstance(installed.constraint, keras.constraints.NonNeg)
    # The layer's own config still names only the user's constraint.
    assert dense.get_config()["kernel_constraint"]["class_name"] == "NonNeg"


def test_a_new_optimizer_gets_a_new_proximal_step():
    x, y, w0 = _linear_problem()
    model = _step_model(w0, kr.L1(0.05, proximal=True), keras.optimizers.SGD(0.05))
    scheduler = kr.callbacks.RegularizationScheduler()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[scheduler])
    first = model.layers[0].kernel.constraint
    model.fit(x, y, epochs=1, verbose=0, callbacks=[scheduler])
    assert model.layers[0].kernel.constraint is first  # nothing to redo
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[scheduler])
    step = model.layers[0].kernel.constraint
    assert step.optimizer is model.optimizer and step.constraint is None


def test_a_step_traced_before_the_scheduler_came_is_retraced():
    x, y, w0 = _linear_problem()
    with pytest.warns(UserWarning, match="proximal=True but no"):
        model = _step_model(w0, kr.L1(0.3, proximal=True), keras.optimizers.SGD(0.05))
        model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert not (ops.convert_to_numpy(model.layers[0].kernel) == 0.0).any()
    model.fit(x, y, batch_size=len(x), epochs=3, verbose=0,
              callbacks=[kr.callbacks.RegularizationScheduler()])
    assert (ops.convert_to_numpy(model.layers[0].kernel) == 0.0).any()


@pytest.mark.parametrize(
    "optimizer", [keras.optimizers.Nadam, keras.optimizers.Adamax, keras.optimizers.Lion]
)
def test_an_optimizer_without_known_steps_is_refused(optimizer):
    x, y, w0 = _linear_problem()
    model = _step_model(w0, kr.L1(0.05, proximal=True), optimizer())
    with pytest.raises(ValueError, match=rf"L1\(proximal=True\)` on weight .*kernel.*"
                       rf"SGD .*Received: optimizer={optimizer.__name__}"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])


def test_group_lasso_with_per_coordinate_steps_is_refused():
    x, y, w0 = _linear_problem()
    model = _step_model(w0, kr.GroupLasso(0.02, axis=0, proximal=True), keras.optimizers.Adam())
    with pytest.raises(ValueError, match="no closed form .*Received: optimizer=Adam"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])


def test_group_lasso_axis_that_the_weight_lacks_is_refused_when_training_starts():
    x, y, w0 = _linear_problem()
    model = _step_model(w0, kr.GroupLasso(0.05, axis=2, proximal=True), keras.optimizers.SGD())
    with pytest.raises(ValueError, match=r"`axis`.*\[-2, 2\).*shape \(6, 1\).*axis=2"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])


def test_proximal_regularizer_saves_loads_and_resumes_in_a_fresh_process(tmp_path):
    x, y, w0 = _linear_problem()
    schedule = kr.schedules.Linear(0.02, 0.3, end_step=8)
    model = _step_model(w0, kr.L1(schedule, proximal=True), keras.optimizers.Adam(0.05))
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[kr.callbacks.RegularizationScheduler()])
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[kr.callbacks.RegularizationScheduler()])
    expected = ops.convert_to_numpy(model.layers[0].kernel)
    got = run_python(
        """
        import json, keras, numpy as np
        import keras_regx as kr
        model = keras.models.load_model("m.keras", safe_mode=True)
        reg = model.layers[0].kernel_regularizer
        model.fit(np.load("x.npy"), np.load("y.npy"), batch_size=8, epochs=1, shuffle=False,
                  verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])
        print(json.dumps({"proximal": reg.proximal, "class": type(reg).__name__,
                          "kernel": keras.ops.convert_to_numpy(model.layers[0].kernel).tolist()}))
        """,
        tmp_path,
    )
    assert got["proximal"] is True and got["class"] == "L1"
    np.testing.assert_allclose(got["kernel"], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.array(got["kernel"]) == 0.0, expected == 0.0)
    assert (expected == 0.0).any()



@pytest.fixture
def mixed_policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("mixed_policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision_reaches_the_float32_solution(mixed_policy):
    # The weights stay float32 and the proximal step runs on them (through
    # the LossScaleOptimizer under mixed_float16); only the forward pass is
    # in 16 bits, so the solution is the float32 one to 16-bit precision.
    x, y = diabetes()
    lr = 1.0 / mse_lipschitz(x)
    kernel = fit_full_batch(x, y, kr.L1(0.05, proximal=True), keras.optimizers.SGD(lr), 500)
    assert kernel.dtype == np.float32
    keras.mixed_precision.set_global_policy("float32")
    reference = fit_full_batch(x, y, kr.L1(0.05, proximal=True), keras.optimizers.SGD(lr), 500)
    # Measured: 1.3e-4 to 1.5e-4 (float16), 1.2e-3 to 3.2e-3 (bfloat16: 8-bit mantissa).
    tolerance = 1e-3 if mixed_policy == "mixed_float16" else 1e-2
    assert relative_error(kernel, reference) <= tolerance
    np.testing.assert_array_equal(kernel == 0.0, reference == 0.0)
