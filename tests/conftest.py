import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib
import copy
import json
import math
import subprocess
import sys
import textwrap
import types

import keras
import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from keras_regx import schedules

BACKEND = keras.backend.backend()


def jit_compile_options():
    """The compiled-step variants worth covering on this backend."""
    if BACKEND == "torch":
        return ["auto"]
    return ["auto", True]


class StepLosses(keras.callbacks.Callback):
    """Recovers each step's loss from the running epoch mean Keras logs."""

    def on_train_begin(self, logs=None):
        self.losses = []

    def on_epoch_begin(self, epoch, logs=None):
        self._seen = 0
        self._mean = 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        n = self._seen + 1
        self.losses.append(mean * n - self._mean * self._seen)
        self._seen, self._mean = n, mean


def diabetes():
    """scikit-learn's diabetes data, inputs standardized, target centred and scaled."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = (y - y.mean()) / y.std()
    return x.astype("float32"), y.astype("float32")[:, None]


def mse_lipschitz(x):
    """Lipschitz constant of the gradient of mean((x @ w - y) ** 2) in w."""
    return float(2.0 * np.linalg.eigvalsh(x.T @ x / len(x)).max())


def fit_full_batch(x, y, regularizer, optimizer, steps, jit_compile="auto", repeats=50):
    """Trains a linear model on (x, y) with `steps` full-batch updates.

    The kernel starts at zero and the bias is not regularized, as in
    scikit-learn's linear models with an intercept. Each epoch holds `repeats`
    copies of the data, one full batch each, run as one compiled execution
    (PyTorch runs one step per execution). Returns the kernel as a numpy array.
    """
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(
                y.shape[1], kernel_regularizer=regularizer, kernel_initializer="zeros"
            ),
        ]
    )
    per_execution = 1 if BACKEND == "torch" else repeats
    model.compile(optimizer, "mse", jit_compile=jit_compile, steps_per_execution=per_execution)
    import keras_regx as kr

    model.fit(
        np.tile(x, (repeats, 1)),
        np.tile(y, (repeats, 1)),
        batch_size=len(x),
        epochs=steps // repeats,
        shuffle=False,
        verbose=0,
        callbacks=[kr.callbacks.RegularizationScheduler()],
    )
    return keras.ops.convert_to_numpy(model.layers[0].kernel)


def relative_error(got, expected):
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


@contextlib.contextmanager
def global_policy(policy):
    """Runs the block under dtype policy `policy`, then restores float32."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def sgd_under(policy):
    """SGD(0.01); under mixed_float16 in a LossScaleOptimizer that starts low.

    Keras' default initial loss scale (2 ** 15) overflows float16 on the
    first steps, which the optimizer then skips: starting low, every step
    counts and the scheduled values are known.
    """
    optimizer = keras.optimizers.SGD(0.01)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=128.0)
    return optimizer


# Drop rates whose scale 1 / (1 - rate) overflows the compute dtype: the
# layers drop everything there (a scale of 0), where 0 * inf gave nan.
NEAR_ONE = [
    pytest.param("float32", schedules.Constant(0.9999999999), id="rounds-to-1"),
    pytest.param("mixed_float16", 0.99999, id="float16"),
    pytest.param("mixed_float16", schedules.Constant(0.99999), id="float16-scheduled"),
]


def fit_near_one(model, x, policy, jit_compile):
    """Trains `model` 2 epochs on (`x`, ones) under `policy`'s optimizer and
    checks that the losses and every weight stayed finite."""
    import keras_regx as kr

    model.compile(sgd_under(policy), "mse", jit_compile=jit_compile)
    history = model.fit(x, np.ones((len(x), 1), "float32"), batch_size=8, epochs=2,
                        verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)


def fit_under_policy(policy, make_layer, input_shape, jit_compile="auto"):
    """Trains `[make_layer(), Dense(1)]` for 2 epochs under dtype `policy`.

    The layer's rate follows a schedule driven by RegularizationScheduler.
    Returns the layer's output dtype in the compiled step, the rates it
    logged and the losses (the global policy is restored afterwards).
    """
    import keras_regx as kr

    with global_policy(policy):
        layer = make_layer(kr.schedules.Linear(0.1, 0.4, end_step=3))
        seen = []

        class Spy(keras.layers.Layer):
            def call(self, x):
                seen.append(keras.backend.standardize_dtype(x.dtype))
                return x

        model = keras.Sequential([keras.Input(input_shape), layer, Spy(),
                                  keras.layers.Flatten(), keras.layers.Dense(1, dtype="float32")])
        model.compile(sgd_under(policy), "mse", jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16,) + tuple(input_shape)).astype("float32")
        history = model.fit(x, np.ones((16, 1), "float32"), batch_size=8, epochs=2,
                            verbose=0, callbacks=[kr.callbacks.RegularizationScheduler()])
    rates = [v for k, v in history.history.items() if k.endswith("/rate")][0]
    return seen[-1], rates, history.history["loss"]


# A model whose data loss is 0: its loss is its weight penalty alone. Shared
# by the tests of the regularization driver (test_callbacks), of resuming
# interrupted training (test_saving) and of custom loops (test_training_loops).
W = np.array([[1.0], [-2.0], [3.0]], "float32")
L1_PENALTY = float(np.abs(W).sum())  # 6
L2_PENALTY = float(np.square(W).sum())  # 14
RAMP = schedules.Linear(0.0, 1.0, begin_step=2, end_step=12)


def zero_data_loss_model(reg, jit_compile="auto"):
    """A model whose data loss is 0 and whose weights never move (lr = 0).

    Its loss is therefore exactly the penalty at the current strength.
    """
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(
                1,
                use_bias=False,
                kernel_initializer=keras.initializers.Constant(W),
                kernel_regularizer=reg,
            ),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=jit_compile)
    return model


def zeros(n):
    return np.zeros((n, 3), "float32"), np.zeros((n, 1), "float32")


def scheduled_eval_model(name):
    """A compiled model with a scheduled, proximal ElasticNet named `name` and
    a ScheduledDropout named "drop": each warns when a training step runs
    with nothing driving it."""
    import keras_regx as kr

    reg = kr.regularizers.ElasticNet(l1=RAMP, l2=0.5, proximal=True, name=name)
    model = keras.Sequential([
        keras.Input((3,)),
        kr.layers.ScheduledDropout(schedules.Linear(0.0, 0.5, end_step=4), seed=1, name="drop"),
        keras.layers.Dense(1, kernel_regularizer=reg),
    ])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


@pytest.fixture
def compilations(monkeypatch):
    """Counts the passes keras_regx compiles to measure sparsity.

    `compiled`: calls of `keras_regx._counting.compiled`, one per pass built;
    `traced`: runs of a pass's Python function (a trace on TensorFlow and
    JAX; every call on PyTorch, which runs the pass eagerly).
    """
    from keras_regx import _counting

    record = types.SimpleNamespace(compiled=0, traced=0)
    compile_pass = _counting.compiled

    def spy(fn):
        def counted(*args):
            record.traced += 1
            return fn(*args)

        record.compiled += 1
        return compile_pass(counted)

    monkeypatch.setattr(_counting, "compiled", spy)
    return record


def run_python(code, tmp_path):
    """Runs `code` in a fresh Python process on this backend; returns its JSON."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def resume_in_fresh_process(model, x, y, tmp_path, layer, batch_size):
    """Saves `model`, loads it in a fresh process and trains it one more epoch.

    Returns `model`'s own outputs on `x` after saving, and from the fresh
    process: the loaded model's outputs on `x` (inference), the `rate` of
    layer `layer` as loaded, and the rates the scheduler logged while training
    on (`x`, `y`) with `batch_size`. Outputs drawn from the seed generators
    (MCDropout) agree when their state is saved with the model.
    """
    model.save(tmp_path / "m.keras")
    expected = keras.ops.convert_to_numpy(model(x)).tolist()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    got = run_python(
        f"""
        import json, keras, numpy as np
        import keras_regx as kr
        model = keras.models.load_model("m.keras", safe_mode=True)
        x, y = np.load("x.npy"), np.load("y.npy")
        outputs = keras.ops.convert_to_numpy(model(x)).tolist()
        rate = float(keras.ops.convert_to_numpy(model.get_layer("{layer}").rate))
        history = model.fit(x, y, batch_size={batch_size}, verbose=0, shuffle=False,
                            callbacks=[kr.callbacks.RegularizationScheduler()])
        print(json.dumps({{"outputs": outputs, "rate": rate,
                          "logged": history.history["{layer}/rate"]}}))
        """,
        tmp_path,
    )
    return expected, got


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield


# Config round trips for random valid arguments (hypothesis), shared by the
# layer test files.

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None)
RATE_VALUES = st.floats(0.0, 1.0, exclude_max=True)
# A drop rate: a float in [0, 1), or a schedule of such values.
RATE_ARGS = st.one_of(
    RATE_VALUES,
    st.builds(schedules.Linear, RATE_VALUES, RATE_VALUES, st.integers(0, 100),
              st.integers(101, 10_000)),
    st.builds(schedules.PiecewiseConstant, st.just([10]),
              st.lists(RATE_VALUES, min_size=2, max_size=2)),
)
BAD_RATES = st.one_of(
    st.floats(max_value=0.0, exclude_max=True), st.floats(min_value=1.0), st.just(math.nan)
)
SEEDS = st.one_of(st.none(), st.integers(0, 2**31 - 1))  # seeds every backend takes


def assert_config_round_trips(layer):
    config = layer.get_config()
    assert type(layer).from_config(copy.deepcopy(config)).get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    restored = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    assert type(restored) is type(layer) and restored.get_config() == config
