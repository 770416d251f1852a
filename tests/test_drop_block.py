"""DropBlock1D and DropBlock2D: exact drop rate, block shape, seeds, schedules, saving."""

import json
import math

import keras
import numpy as np
import pytest
from conftest import BACKEND
from conftest import BAD_RATES
from conftest import NEAR_ONE
from conftest import PROPERTY
from conftest import RATE_ARGS
from conftest import SEEDS
from conftest import assert_config_round_trips
from conftest import fit_under_policy
from conftest import fit_near_one
from conftest import global_policy
from conftest import jit_compile_options
from conftest import run_python
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from keras_regx import schedules
from keras_regx.callbacks import RegularizationScheduler
from keras_regx.layers import DropBlock1D
from keras_regx.layers import DropBlock2D

LAST, FIRST = "channels_last", "channels_first"
RATE = 0.3
# A float rate and a schedule (a tensor rate in the mask code) at the same value.
RATES = {"float": RATE, "scheduled": schedules.Linear(RATE, 0.9, begin_step=5, end_step=10)}
# Calling a scheduled layer in training mode outside `fit()` warns that no
# scheduler drives it; the eager tests below expect that.
EAGER = pytest.mark.filterwarnings("ignore:.*no `keras_regx.callbacks.Regulari")
RAMP = schedules.Linear(0.0, 0.6, end_step=10)


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def case(cls, block_size, spatial, data_format, id):
    return pytest.param(cls, block_size, spatial, data_format, id=id)


def block_of(cls, block_size):
    return block_size if isinstance(block_size, tuple) else (block_size,) * (
        2 if cls is DropBlock2D else 1
    )


def inputs(spatial, data_format, batch, channels, x=None):
    shape = (batch, *spatial, channels) if data_format == LAST else (batch, channels, *spatial)
    if x is None:
        return np.ones(shape, "float32")
    return np.random.uniform(0.5, 1.5, shape).astype("float32")


def maps(y, data_format):
    """The feature maps of `y`, one per sample and channel: (maps, *spatial)."""
    if data_format == LAST:
        y = np.moveaxis(y, -1, 1)
    return y.reshape(-1, *y.shape[2:])


def dropped_fraction_se(rate, spatial, block, n_maps):
    """Exact standard error of the dropped fraction over `n_maps` i.i.d. maps.

    Units i and j are dropped together unless none of the seeds in the union
    of their windows fires: with o seeds shared of n per window,
    Cov = (1 - rate)**2 * ((1 - rate) ** (-o / n) - 1). Summed over all pairs
    by their offset along each axis. A block longer than the input is clipped
    to it.
    """
    block = [min(b, size) for b, size in zip(block, spatial)]
    n = math.prod(block)
    pairs, overlap = np.ones(()), np.ones(())
    for size, b in zip(spatial, block):
        offset = np.abs(np.arange(-(size - 1), size))
        pairs = np.multiply.outer(pairs, size - offset)
        overlap = np.multiply.outer(overlap, np.maximum(0, b - offset))
    cov = (1 - rate) ** 2 * ((1 - rate) ** (-overlap / n) - 1)
    return math.sqrt((pairs * cov).sum() / n_maps) / math.prod(spatial)


# One batch and channel count throughout: JAX compiles its eager random draws
# once per shape (seconds each on a busy CPU), so the tests share shapes.
BATCH, CHANNELS = 32, 8
NONSQUARE = case(DropBlock2D, (3, 5), (12, 20), LAST, "2d-nonsquare")
NONSQUARE_FIRST = case(DropBlock2D, (5, 2), (20, 7), FIRST, "2d-nonsquare-first")
BIGGER_FIRST = case(DropBlock2D, (9, 3), (4, 6), FIRST, "2d-block-bigger-first")
SEQUENCE_FIRST = case(DropBlock1D, 5, (50,), FIRST, "1d-first")
SEQUENCE_BIGGER = case(DropBlock1D, 11, (6,), LAST, "1d-block-bigger")
STAT_CASES = [
    case(DropBlock2D, 7, (16, 16), LAST, "2d-square"),
    NONSQUARE,
    NONSQUARE_FIRST,
    case(DropBlock2D, 7, (4, 6), LAST, "2d-block-bigger"),
    BIGGER_FIRST,
    SEQUENCE_FIRST,
    SEQUENCE_BIGGER,
]


@EAGER
@pytest.mark.parametrize("kind", RATES)
@pytest.mark.parametrize("cls,block_size,spatial,data_format", STAT_CASES)
def test_drop_fraction_is_rate_and_mean_is_kept(cls, block_size, spatial, data_format, kind):
    layer = cls(RATES[kind], block_size, data_format=data_format, seed=0)
    x = inputs(spatial, data_format, BATCH, CHANNELS, x="random")
    y = numpy(layer(x, training=True))
    se = dropped_fraction_se(RATE, spatial, block_of(cls, block_size), BATCH * CHANNELS)
    # 5 standard errors: a false failure about once in 1.7 million runs.
    assert abs((y == 0).mean() - RATE) < 5 * se
    scale = 1 / (1 - RATE)
    np.testing.assert_allclose(y[y != 0], (x * scale)[y != 0], rtol=1e-6)
    # Keep indicators are positively correlated, so the output mean's standard
    # error is at most scale * max(x) times the dropped fraction's.
    assert abs(y.mean() - x.mean()) < 5 * scale * x.max() * se


@pytest.mark.parametrize(
    "cls,block_size,spatial,data_format", [NONSQUARE, BIGGER_FIRST, SEQUENCE_BIGGER]
)
def test_every_position_is_dropped_with_probability_rate(cls, block_size, spatial, data_format):
    # The paper's seed rule confines blocks to the input, which drops corners
    # and edges less often than the centre; this mask is stationary.
    layer = cls(RATE, block_size, data_format=data_format, seed=1)
    x = inputs(spatial, data_format, BATCH, CHANNELS)
    dropped = np.concatenate(
        [maps(numpy(layer(x, training=True)), data_format) == 0 for _ in range(8)]
    )
    se = math.sqrt(RATE * (1 - RATE) / len(dropped))  # maps are independent
    # 5 standard errors at each of at most 240 positions: a false failure
    # about once in 7,000 runs.
    assert np.abs(dropped.mean(axis=0) - RATE).max() < 5 * se


def union_of_blocks(dropped, block):
    """Whether every dropped unit lies in a fully dropped `block` window.

    Windows may reach past the edges (blocks are clipped there), so the
    outside counts as dropped.
    """
    axes = tuple(range(1, dropped.ndim))
    last = tuple(range(-len(block), 0))
    padded = np.pad(dropped, [(0, 0)] + [(b - 1, b - 1) for b in block], constant_values=True)
    full = sliding_window_view(padded, block, axis=axes).all(axis=last)
    covered = sliding_window_view(full, block, axis=axes).any(axis=last)
    return bool((covered == dropped).all())


@pytest.mark.parametrize(
    "cls,block_size,spatial,data_format", [NONSQUARE, NONSQUARE_FIRST, SEQUENCE_FIRST]
)
def test_dropped_regions_are_whole_blocks(cls, block_size, spatial, data_format):
    layer = cls(0.1, block_size, data_format=data_format, seed=2)
    y = numpy(layer(inputs(spatial, data_format, BATCH, CHANNELS), training=True))
    dropped = maps(y, data_format) == 0
    assert dropped.any()
    block = block_of(cls, block_size)
    assert union_of_blocks(dropped, block)
    # ... and no bigger: along each axis the blocks are exactly this long.
    for axis in range(len(block)):
        longer = tuple(b + (a == axis) for a, b in enumerate(block))
        assert not union_of_blocks(dropped, longer)


LAYOUTS = [NONSQUARE, NONSQUARE_FIRST, SEQUENCE_FIRST, SEQUENCE_BIGGER]


@pytest.mark.parametrize("kind", RATES)
@pytest.mark.parametrize("cls,block_size,spatial,data_format", LAYOUTS)
def test_identity_at_inference(cls, block_size, spatial, data_format, kind):
    x = inputs(spatial, data_format, BATCH, CHANNELS, x="random")
    layer = cls(RATES[kind], block_size, data_format=data_format)
    np.testing.assert_array_equal(numpy(layer(x)), x)
    np.testing.assert_array_equal(numpy(layer(x, training=False)), x)
    zero = cls(0.0, block_size, data_format=data_format)
    np.testing.assert_array_equal(numpy(zero(x, training=True)), x)


@pytest.mark.parametrize("cls,block_size,spatial,data_format", LAYOUTS)
def test_seeds_repeat_masks_and_calls_draw_fresh_ones(cls, block_size, spatial, data_format):
    x = inputs(spatial, data_format, BATCH, CHANNELS)

    def draws(seed):
        layer = cls(0.4, block_size, data_format=data_format, seed=seed)
        return [numpy(layer(x, training=True)) for _ in range(2)]

    first, second = draws(7)
    again = draws(7)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, draws(8)[0])


@pytest.mark.parametrize("cls,block_size,spatial,data_format", [NONSQUARE, SEQUENCE_FIRST])
def test_keeps_the_input_dtype(cls, block_size, spatial, data_format):
    x = inputs(spatial, data_format, BATCH, CHANNELS).astype("float16")
    layer = cls(0.5, block_size, data_format=data_format, seed=0, dtype="float16")
    y = layer(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert set(np.unique(numpy(y)).tolist()) == {0.0, 2.0}


@keras.saving.register_keras_serializable(package="test_drop_block")
def max_output(y_true, y_pred):
    """The scale 1 / (1 - rate) on all-ones inputs: exact, not a statistic."""
    return keras.ops.max(y_pred)


@keras.saving.register_keras_serializable(package="test_drop_block")
def dropped_fraction(y_true, y_pred):
    return keras.ops.mean(keras.ops.cast(y_pred == 0, "float32"))


class StepValues(keras.callbacks.Callback):
    """Each step's `loss` and `dropped_fraction`, from the running epoch means."""

    KEYS = ("loss", "dropped_fraction")

    def on_train_begin(self, logs=None):
        self.values = {key: [] for key in self.KEYS}

    def on_epoch_begin(self, epoch, logs=None):
        self._seen, self._means = 0, dict.fromkeys(self.KEYS, 0.0)

    def on_train_batch_end(self, batch, logs=None):
        n = self._seen + 1
        for key in self.KEYS:
            mean = float(logs[key])
            self.values[key].append(mean * n - self._means[key] * self._seen)
            self._means[key] = mean
        self._seen = n


FIT_CASES = {
    # Spatial dims None in the model; TensorFlow traces the step with unknown
    # sizes once it sees a second size (`reduce_retracing`).
    "2d-dynamic": (DropBlock2D, (3, 2), (None, None, 8), (8, 12)),
    "1d-first": (DropBlock1D, 4, (8, 24), (24,)),
}


def identity_model(case_id, rate, jit_compile="auto", name="dropblock", block_size=None):
    """All-ones in, the block-dropped input out: max(output) = 1 / (1 - rate)."""
    cls, case_block_size, input_shape, _ = FIT_CASES[case_id]
    block_size = case_block_size if block_size is None else block_size
    data_format = FIRST if case_id.endswith("first") else LAST
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Dense(input_shape[-1], use_bias=False, kernel_initializer="identity"),
            cls(rate, block_size, data_format=data_format, seed=0, name=name),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), max_output, metrics=[dropped_fraction],
                  jit_compile=jit_compile)
    return model


def fit_data(case_id, n):
    cls, _, input_shape, spatial = FIT_CASES[case_id]
    if case_id.endswith("first"):
        shape = (n, *input_shape)
    else:
        shape = (n, *spatial, input_shape[-1])
    return np.ones(shape, "float32"), np.zeros(shape, "float32")


def check_steps(case_id, values, steps, batch, block_size=None, spatial=None):
    rates = np.array([RAMP.value_at(s) for s in steps])
    np.testing.assert_allclose(values["loss"], 1 / (1 - rates), rtol=1e-5)
    cls, case_block_size, input_shape, case_spatial = FIT_CASES[case_id]
    block_size = case_block_size if block_size is None else block_size
    spatial = case_spatial if spatial is None else spatial
    channels = input_shape[0] if case_id.endswith("first") else input_shape[-1]
    block = block_of(cls, block_size)
    se = np.array([dropped_fraction_se(r, spatial, block, batch * channels) for r in rates])
    # 5 standard errors per step (a step at rate 0 must drop nothing).
    assert (np.abs(np.array(values["dropped_fraction"]) - rates) <= 5 * se + 1e-6).all()


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("case_id", FIT_CASES)
def test_scheduled_rate_is_live_in_fit(case_id, jit_compile):
    model = identity_model(case_id, RAMP, jit_compile)
    steps = StepValues()
    x, y = fit_data(case_id, 96)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
                        callbacks=[RegularizationScheduler(), steps])
    check_steps(case_id, steps.values, range(12), batch=16)
    # Steps 10 and 11 share the rate 0.6: the compiled step draws fresh masks.
    assert steps.values["dropped_fraction"][10] != steps.values["dropped_fraction"][11]
    logged = history.history["dropblock/rate"]
    assert logged == pytest.approx([RAMP.value_at(5), RAMP.value_at(11)])


# Blocks larger than the input: clipped to it, so the noise is bounded by the
# input's size (block_size=10**9 used to abort JAX with "overflow in static
# extent product" and ask TensorFlow and PyTorch for gigabytes).
HUGE = 10**9
CLIPPED_CASES = [
    pytest.param(DropBlock1D, HUGE, (6,), LAST, 6, id="1d"),
    pytest.param(DropBlock1D, 3000, (6,), FIRST, 6, id="1d-3000-first"),
    pytest.param(DropBlock2D, HUGE, (6, 6), LAST, 6, id="2d"),
    pytest.param(DropBlock2D, 3000, (6, 6), FIRST, 6, id="2d-3000-first"),
    pytest.param(DropBlock2D, (2, HUGE), (6, 5), LAST, (2, 5), id="2d-one-axis"),
    pytest.param(DropBlock2D, 10**100, (6, 5), LAST, (6, 5), id="2d-beyond-int64"),
]


def refuse_draws_over(monkeypatch, bound):
    """Makes `keras.random.uniform` refuse draws of over `bound` values.

    The noise grid has at most `2 * size - 1` places along each spatial axis,
    so `bound` is `2 ** rank` times the input's size. A bigger draw fails the
    test before it allocates anything (or aborts JAX). Sizes known only when
    a traced step runs (TensorFlow) are not checked.
    """
    uniform = keras.random.uniform

    def bounded_uniform(shape, *args, **kwargs):
        if all(isinstance(n, int) for n in shape):
            assert math.prod(shape) <= bound, f"a draw of shape {shape}, over {bound} values"
        return uniform(shape, *args, **kwargs)

    monkeypatch.setattr(keras.random, "uniform", bounded_uniform)


@EAGER
@pytest.mark.parametrize("kind", RATES)
@pytest.mark.parametrize("cls,block_size,spatial,data_format,clipped", CLIPPED_CASES)
def test_a_block_larger_than_the_input_is_clipped_to_it(
    cls, block_size, spatial, data_format, clipped, kind, monkeypatch
):
    x = inputs(spatial, data_format, BATCH, CHANNELS, x="random")
    refuse_draws_over(monkeypatch, 2 ** len(spatial) * x.size)
    huge = cls(RATES[kind], block_size, data_format=data_format, seed=5)
    same = cls(RATES[kind], clipped, data_format=data_format, seed=5)
    for _ in range(2):
        y = numpy(huge(x, training=True))
        np.testing.assert_array_equal(y, numpy(same(x, training=True)))
    se = dropped_fraction_se(RATE, spatial, block_of(cls, clipped), BATCH * CHANNELS)
    assert abs((y == 0).mean() - RATE) < 5 * se


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("case_id", FIT_CASES)
def test_a_huge_block_in_fit_is_the_input_sized_block(case_id, jit_compile, monkeypatch):
    # Same seed, same masks at every step. "2d-dynamic" then trains on
    # smaller maps, which TensorFlow's step retraces with unknown spatial
    # sizes (`reduce_retracing`): both blocks are clipped when the step runs.
    _, _, input_shape, spatial = FIT_CASES[case_id]
    x, y = fit_data(case_id, 64)
    refuse_draws_over(monkeypatch, 2 ** len(spatial) * x[:16].size)
    sizes = [spatial, (5, 7)] if case_id == "2d-dynamic" else [spatial]
    values = []
    for block_size in (HUGE, spatial if len(spatial) > 1 else spatial[0]):
        model = identity_model(case_id, RAMP, jit_compile, block_size=block_size)
        for size in sizes:
            crop = (slice(None), *(slice(n) for n in size)) if len(size) > 1 else ()
            steps = StepValues()
            model.fit(x[crop], y[crop], batch_size=16, epochs=2, verbose=0, shuffle=False,
                      callbacks=[RegularizationScheduler(), steps])
            values.append(steps.values)
    assert values[: len(sizes)] == values[len(sizes) :]
    for i, size in enumerate(sizes):
        check_steps(case_id, values[i], range(8 * i, 8 * i + 8), batch=16, block_size=HUGE,
                    spatial=size)


@EAGER
@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow alone traces unknown sizes")
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(
    "cls,block_size,data_format,shape",
    [
        (DropBlock2D, HUGE, LAST, (32, 7, 9, 3)),
        (DropBlock2D, (HUGE, 4), FIRST, (32, 3, 7, 9)),
        (DropBlock2D, (3, 2), LAST, (32, 7, 9, 3)),
        (DropBlock2D, (8, 5), LAST, (32, 7, 9, 3)),
        (DropBlock1D, HUGE, FIRST, (32, 3, 10)),
        (DropBlock1D, 1, LAST, (32, 10, 3)),
    ],
)
def test_a_step_traced_with_unknown_sizes_draws_the_same_masks(
    cls, block_size, data_format, shape, jit_compile
):
    import tensorflow as tf

    x = np.random.uniform(0.5, 1.5, shape).astype("float32")
    # A rate that drops from the first step (its own schedule object: layers
    # on one schedule object share its value, which other tests move).
    rate = schedules.Linear(0.3, 0.6, end_step=10)
    traced, known, eager = (cls(rate, block_size, data_format=data_format, seed=3)
                            for _ in range(3))
    unknown = [n if i == 0 or i == (1 if data_format == FIRST else len(shape) - 1) else None
               for i, n in enumerate(shape)]
    step = tf.function(lambda x: traced(x, training=True), jit_compile=jit_compile,
                       input_signature=[tf.TensorSpec(unknown, "float32")])
    # XLA draws other random numbers than TensorFlow's kernels: compare with
    # the same compilation at known sizes (without XLA that equals eager).
    reference = tf.function(lambda x: known(x, training=True), jit_compile=jit_compile)
    for _ in range(2):
        y = numpy(step(x))
        assert 0.05 < np.mean(y == 0) < 0.95  # the masks drop something
        np.testing.assert_array_equal(y, numpy(reference(x)))
        if not jit_compile:
            np.testing.assert_array_equal(y, numpy(eager(x, training=True)))


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("policy,rate", NEAR_ONE)
def test_a_rate_whose_scale_overflows_drops_everything(policy, rate, jit_compile):
    with global_policy(policy):
        layer = DropBlock2D(rate, block_size=3, seed=0)
        model = keras.Sequential([
            keras.Input((6, 6, 4)), keras.layers.Dense(4), layer,
            keras.layers.Flatten(), keras.layers.Dense(1, dtype="float32"),
        ])
        fit_near_one(model, np.random.normal(size=(16, 6, 6, 4)).astype("float32"),
                     policy, jit_compile)
        # Half a million units: a few of them would be kept at 1 - rate = 1e-5.
        y = numpy(layer(np.ones((64, 32, 32, 8), "float32"), training=True))
    assert not y.any()


CONFIGS = [
    pytest.param(DropBlock1D, dict(rate=0.1, block_size=3, data_format=FIRST, seed=3), id="1d"),
    pytest.param(DropBlock2D, dict(rate=0.2, block_size=(3, 5), data_format=LAST, seed=4),
                 id="2d-tuple"),
    pytest.param(DropBlock2D, dict(rate=RAMP, block_size=7), id="2d-scheduled"),
]


@pytest.mark.parametrize("cls,kwargs", CONFIGS)
def test_config_round_trip(cls, kwargs):
    layer = cls(**kwargs, name="db")
    config = layer.get_config()
    assert config["data_format"] == kwargs.get("data_format", keras.config.image_data_format())
    clone = cls.from_config(json.loads(json.dumps(config)))
    assert json.dumps(clone.get_config()) == json.dumps(config)
    assert clone.scheduled_hyperparameters == layer.scheduled_hyperparameters
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is cls and restored.get_config() == config


def test_keras_file_round_trip_continues_training(tmp_path):
    case_id = "2d-dynamic"
    model = identity_model(case_id, RAMP)
    x, y = fit_data(case_id, 5 * 16)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
              callbacks=[RegularizationScheduler()])
    probe = np.random.normal(size=(3, 5, 7, 8)).astype("float32")
    np.save(tmp_path / "probe.npy", probe)
    np.save(tmp_path / "expected.npy", numpy(model(probe, training=False)))
    model.save(tmp_path / "mid.keras")
    got = run_python(
        """
        import json, keras, numpy as np
        import keras_regx as kr

        @keras.saving.register_keras_serializable(package="test_drop_block")
        def max_output(y_true, y_pred):
            return keras.ops.max(y_pred)

        @keras.saving.register_keras_serializable(package="test_drop_block")
        def dropped_fraction(y_true, y_pred):
            return keras.ops.mean(keras.ops.cast(y_pred == 0, "float32"))

        model = keras.models.load_model("mid.keras", safe_mode=True)
        probe, expected = np.load("probe.npy"), np.load("expected.npy")
        out = keras.ops.convert_to_numpy(model(probe, training=False))
        same = bool(np.array_equal(out, expected))
        layer = model.get_layer("dropblock")
        rate = float(keras.ops.convert_to_numpy(layer.rate))
        losses = []
        class Steps(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                losses.append(float(logs["loss"]) * (batch + 1) - mean[0] * batch)
                mean[0] = float(logs["loss"])
        mean = [0.0]
        x = np.ones((4 * 16, 8, 12, 8), "float32")
        model.fit(x, np.zeros_like(x), batch_size=16, epochs=1, verbose=0, shuffle=False,
                  callbacks=[kr.callbacks.RegularizationScheduler(), Steps()])
        print(json.dumps({"same": same, "type": type(layer).__name__,
                          "rate": rate, "losses": losses}))
        """,
        tmp_path,
    )
    assert got["same"] and got["type"] == "DropBlock2D"
    assert got["rate"] == pytest.approx(RAMP.value_at(4))  # the saved value
    expected = [1 / (1 - RAMP.value_at(s)) for s in range(5, 9)]
    np.testing.assert_allclose(got["losses"], expected, rtol=1e-5)


BAD_ARGUMENTS = [
    (dict(rate=1.0), ValueError, "rate", r"a float >= 0.0 and < 1.0. Received: rate=1.0"),
    (dict(rate=-0.1), ValueError, "rate", r".*Received: rate=-0.1"),
    (dict(rate="0.1"), TypeError, "rate",
     r"a float or a schedule.*Received: rate='0.1' \(of type str\)"),
    (dict(block_size=0), ValueError, "block_size", r"a positive int.*Received: block_size=0"),
    (dict(block_size=2.5), TypeError, "block_size",
     r".*Received: block_size=2.5 \(of type float\)"),
    (dict(block_size=True), TypeError, "block_size", r".*Received: block_size=True"),
    (dict(data_format="nhwc"), ValueError, "data_format",
     r"one of \('channels_last', 'channels_first'\) or None. Received: data_format='nhwc'"),
    (dict(data_format=1), TypeError, "data_format",
     r".*Received: data_format=1 \(of type int\)"),
    (dict(seed="1"), TypeError, "seed", r"an int or None. Received: seed='1'"),
]


@pytest.mark.parametrize("cls", [DropBlock1D, DropBlock2D])
@pytest.mark.parametrize("kwargs,error,name,message", BAD_ARGUMENTS)
def test_bad_arguments_raise(cls, kwargs, error, name, message):
    kwargs = {"rate": 0.1, "block_size": 3, **kwargs}
    expected = rf"Invalid value for argument `{name}`: expected {message}"
    with pytest.raises(error, match=expected):
        cls(**kwargs)


@pytest.mark.parametrize(
    "cls,block_size,error,message",
    [
        (DropBlock2D, (3,), ValueError, r"ints. Received: block_size=\(3,\) \(of length 1\)"),
        (DropBlock2D, (3, 0), ValueError, r"ints. Received: block_size=\(3, 0\)$"),
        (DropBlock2D, [3, 2.0], TypeError,
         r"Received: block_size=\[3, 2.0\] \(with an entry of type float\)"),
        (DropBlock1D, (3,), TypeError,
         r"expected a positive int. Received: block_size=\(3,\) \(of type tuple\)"),
    ],
)
def test_bad_block_tuples_raise(cls, block_size, error, message):
    with pytest.raises(error, match=message):
        cls(0.1, block_size)


@pytest.mark.parametrize(
    "cls,shape,message",
    [
        (DropBlock2D, (2, 3), r"expects inputs of rank 4, \(batch, height, width, channels\)"),
        (DropBlock1D, (2, 3, 4, 5), r"expects inputs of rank 3, \(batch, steps, channels\)"),
    ],
)
def test_wrong_input_rank_raises(cls, shape, message):
    layer = cls(0.1, 3, data_format=LAST)
    with pytest.raises(ValueError, match=message + r".*Received: inputs of rank"):
        layer(np.ones(shape, "float32"), training=True)
    with pytest.raises(ValueError, match=message):
        keras.Sequential([keras.Input(shape[1:]), cls(0.1, 3, data_format=LAST)])


# Config round trips for random valid arguments (hypothesis).

BLOCK_SIZES = {
    DropBlock1D: st.integers(1, 16),
    DropBlock2D: st.one_of(st.integers(1, 16), st.tuples(st.integers(1, 16), st.integers(1, 16))),
}


@pytest.mark.parametrize("cls", [DropBlock1D, DropBlock2D])
@PROPERTY
@given(data=st.data(), rate=RATE_ARGS, seed=SEEDS, bad=BAD_RATES,
       data_format=st.sampled_from([None, LAST, FIRST, "Channels_First"]))
def test_config_round_trips_for_random_arguments(cls, data, rate, seed, bad, data_format):
    block_size = data.draw(BLOCK_SIZES[cls])
    layer = cls(rate, block_size, data_format=data_format, seed=seed)
    assert_config_round_trips(layer)
    config = layer.get_config()
    with pytest.raises(ValueError, match="`rate`"):
        cls.from_config({**config, "rate": bad})
    with pytest.raises(ValueError, match="`block_size`"):
        cls.from_config({**config, "block_size": data.draw(st.integers(max_value=0))})


@pytest.mark.parametrize("jit_compile", jit_compile_options())
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_the_compute_dtype_and_a_live_float32_rate(policy, jit_compile):
    # The scheduled rate stays a float32 variable (not autocast), the output
    # keeps the policy's compute dtype, and the schedule is live.
    dtype, rates, losses = fit_under_policy(
        policy, lambda rate: DropBlock2D(rate, block_size=3, seed=1), (8, 8, 3), jit_compile)
    assert dtype == policy.split("_")[1]
    assert rates == pytest.approx([0.1 + 0.3 * 1 / 3, 0.1 + 0.3 * 3 / 3])
    assert np.isfinite(losses).all()
