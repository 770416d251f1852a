"""Every public layer against Keras' layer contract, and across save and load.

Keras' own harness (`keras.src.testing.TestCase.run_layer_test`) checks
building, symbolic and eager calls, a compiled training step, masking, mixed
precision and serialization the way Keras checks its own layers. Then: a
subclass's `build()` runs; a model loaded from a file draws the same masks
as the saved one; bad `rate`, `noise_shape` and `seed` values raise what
`keras.layers.Dropout` raises, on every backend alike.
"""

import keras
import numpy as np
import pytest
from keras.src.backend import get_keras_mask
from keras.src.testing import TestCase

import keras_regx as kr
from keras_regx import schedules
from keras_regx.layers import ConcreteDropout
from keras_regx.layers import DropBlock1D
from keras_regx.layers import DropBlock2D
from keras_regx.layers import DropConnectDense
from keras_regx.layers import DropPath
from keras_regx.layers import MCDropout
from keras_regx.layers import ScheduledDropout

# Calling a scheduled layer in training mode outside a driven `fit()` warns
# that no scheduler drives it (tested in the layers' own files).
UNDRIVEN = pytest.mark.filterwarnings("ignore:.*no `keras_regx.callbacks.Regulari")
RATES = {"float": 0.3, "scheduled": schedules.Linear(0.3, 0.5, end_step=10)}


def concrete_dropout(dtype=None, **kwargs):
    """A ConcreteDropout around a fresh Dense(4) of the same dtype policy.

    The harness makes several layers from one set of arguments: each needs
    its own wrapped layer.
    """
    return ConcreteDropout(keras.layers.Dense(4, dtype=dtype), dtype=dtype, **kwargs)


class Case:
    """A public layer: how to make one and what to call it on."""

    def __init__(self, make, kwargs, input_shape, output_shape=None, trainable=0,
                 masking=True, rate=True):
        self.make = make
        self.kwargs = kwargs
        self.input_shape = input_shape
        self.output_shape = output_shape or input_shape
        self.trainable = trainable  # the number of trainable weights once built
        self.masking = masking
        self.rate = rate  # whether it takes a `rate` (ConcreteDropout learns it)

    @property
    def cls(self):
        return ConcreteDropout if self.make is concrete_dropout else self.make


CASES = {
    "ScheduledDropout": Case(ScheduledDropout, {}, (2, 3, 4)),
    "ScheduledDropout-noise_shape": Case(ScheduledDropout, dict(noise_shape=(None, 1, 4)),
                                         (2, 3, 4)),
    "MCDropout": Case(MCDropout, {}, (2, 3, 4)),
    "DropPath": Case(DropPath, {}, (16, 3, 2)),
    "DropBlock1D": Case(DropBlock1D, dict(block_size=2), (2, 6, 3)),
    "DropBlock2D": Case(DropBlock2D, dict(block_size=(2, 3)), (2, 5, 6, 3)),
    "DropBlock2D-channels_first": Case(
        DropBlock2D, dict(block_size=2, data_format="channels_first"), (2, 3, 5, 6)),
    "DropConnectDense": Case(DropConnectDense, dict(units=4, drop_bias=True), (2, 3),
                             output_shape=(2, 4), trainable=2),
    "ConcreteDropout": Case(concrete_dropout, {}, (2, 3), output_shape=(2, 4),
                            trainable=3, masking=False, rate=False),
    "ConcreteDropout-deterministic": Case(concrete_dropout, dict(mc_inference=False), (2, 3),
                                          output_shape=(2, 4), trainable=3, masking=False,
                                          rate=False),
}
# (case, rate kind): ConcreteDropout has no rate argument, so no scheduled one.
VARIANTS = [
    pytest.param(name, kind, id=f"{name}-{kind}")
    for name, case in CASES.items()
    for kind in (RATES if case.rate else ["float"])
]


def make_kwargs(case, kind, **extra):
    kwargs = dict(case.kwargs, **extra)
    if case.rate:
        kwargs["rate"] = RATES[kind]
    return kwargs


class KerasLayerTest(TestCase):
    """Keras' layer test harness, called from pytest functions."""

    __test__ = False  # not a test class itself

    def runTest(self):  # unittest needs a method to instantiate the case
        pass


@pytest.fixture
def keras_test():
    return KerasLayerTest()


def test_every_public_layer_is_covered():
    assert {case.cls.__name__ for case in CASES.values()} | {"StochasticDepth"} == set(
        kr.layers.__all__)


@UNDRIVEN
# Warnings of the harness's own training step (as for Keras' Dropout): it
# fits on a generator with fit()'s default shuffle=True, and PyTorch's
# trainer warns on a model without trainable weights.
@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed:UserWarning")
@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights:UserWarning")
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name,kind", VARIANTS)
def test_keras_layer_contract(keras_test, name, kind, training):
    case = CASES[name]
    keras_test.run_layer_test(
        case.make,
        init_kwargs=make_kwargs(case, kind, seed=1),
        input_shape=case.input_shape,
        call_kwargs={"training": training},
        expected_output_shape=case.output_shape,
        expected_output_dtype="float32",
        expected_num_trainable_weights=case.trainable,
        # A scheduled rate is a non-trainable float32 weight of the layer.
        expected_num_non_trainable_weights=int(kind == "scheduled"),
        expected_num_seed_generators=1,
        expected_num_losses=1 if case.cls is ConcreteDropout else 0,
        supports_masking=case.masking,
        run_training_check=True,
        run_mixed_precision_check=True,
        # Keras' stateless layers (Dropout) are built at construction, and a
        # subclass that overrides build() is not.
        assert_built_after_instantiation=case.trainable == 0,
    )


@UNDRIVEN
@pytest.mark.parametrize(
    "name,kind", [v for v in VARIANTS if CASES[v.values[0]].masking])
def test_keras_masks_pass_through(name, kind):
    case = CASES[name]
    data = np.random.default_rng(0).normal(size=case.input_shape).astype("float32")
    data[:, -1] = 0.0  # the last step of each sample is masked
    inputs = keras.layers.Masking(0.0)(data)
    mask = keras.ops.convert_to_numpy(get_keras_mask(inputs))
    for training in (True, False):
        outputs = case.make(**make_kwargs(case, kind, seed=1))(inputs, training=training)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(get_keras_mask(outputs)), mask)


@UNDRIVEN
@pytest.mark.parametrize("name,kind", VARIANTS)
def test_a_subclass_build_is_called(name, kind):
    # Keras does not call `build()` on a layer built at construction: a
    # subclass that creates weights there would never get them.
    case = CASES[name]
    calls = []

    class WithExtraWeight(case.cls):
        def build(self, input_shape):
            super().build(input_shape)
            calls.append(tuple(input_shape))
            self.extra = self.add_weight(shape=(), initializer="ones", name="extra")

    kwargs = make_kwargs(case, kind, seed=1)
    if case.cls is ConcreteDropout:
        kwargs["layer"] = keras.layers.Dense(4)
    layer = WithExtraWeight(**kwargs)
    assert not layer.built
    x = np.ones(case.input_shape, "float32")
    layer(x, training=True)
    assert layer.built and calls == [case.input_shape]
    assert any(w is layer.extra for w in layer.weights)
    layer(x, training=True)
    assert len(calls) == 1


# Save -> load: the loaded model draws the masks the saved one would have.

def numpy(x):
    return keras.ops.convert_to_numpy(x)


def small_model(case, kind, seed):
    layer = case.make(**make_kwargs(case, kind, seed=seed), name="layer")
    return keras.Sequential([keras.Input(case.input_shape[1:]), layer])


def masked_outputs(model, x):
    """Two training-mode calls, then, for layers that drop at inference,
    a compiled `predict` and `mc_predict`."""
    outputs = [numpy(model(x, training=True)) for _ in range(2)]
    layer = model.get_layer("layer")
    if isinstance(layer, MCDropout) or (
            isinstance(layer, ConcreteDropout) and layer.mc_inference):
        outputs.append(model.predict(x, verbose=0))
        outputs.extend(kr.utils.mc_predict(model, x, samples=3))
    return outputs


@UNDRIVEN
@pytest.mark.parametrize("seed", [None, 7])
@pytest.mark.parametrize("name,kind", VARIANTS)
def test_a_loaded_model_draws_the_masks_the_saved_one_would(tmp_path, name, kind, seed):
    case = CASES[name]
    model = small_model(case, kind, seed)
    x = np.random.default_rng(0).normal(size=case.input_shape).astype("float32") + 2.0
    model(x, training=True)  # the generator's state is no longer its initial one
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    expected, got = masked_outputs(model, x), masked_outputs(loaded, x)
    assert not np.array_equal(expected[0], expected[1])  # masks are drawn
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_array_equal(have, want)


@UNDRIVEN
@pytest.mark.parametrize("name,kind", VARIANTS)
def test_files_without_the_seed_state_still_load(tmp_path, monkeypatch, name, kind):
    # Written as earlier versions did: the layer's variables, no seed state.
    case = CASES[name]
    model = small_model(case, kind, seed=3)
    with monkeypatch.context() as patch:
        patch.setattr(case.cls, "save_own_variables", keras.layers.Layer.save_own_variables)
        model.save(tmp_path / "old.keras")
    loaded = keras.models.load_model(tmp_path / "old.keras", safe_mode=True)
    for want, have in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(numpy(have), numpy(want))
    x = np.ones(case.input_shape, "float32")
    assert numpy(loaded(x, training=True)).shape == case.output_shape


# Bad arguments: one error per argument, the exception type Keras raises.

def required_kwargs(case):
    return {k: v for k, v in case.kwargs.items() if k in ("block_size", "units")}


RATE_CASES = [name for name, case in CASES.items() if case.rate and "-" not in name]
BAD_RATES = ["0.5", None, [0.5], 1.5, -0.1, float("nan")]
BAD_NOISE_SHAPES = ["Invalid", 5, (None, 1.5), (None, 0), (None, -2)]


def keras_dropout_error(**kwargs):
    with pytest.raises(Exception) as error:
        keras.layers.Dropout(**kwargs)
    return error.type


@pytest.mark.parametrize("value", BAD_RATES, ids=repr)
@pytest.mark.parametrize("name", RATE_CASES)
def test_bad_rate_raises_what_keras_raises(name, value):
    expected = keras_dropout_error(rate=value)
    case = CASES[name]
    with pytest.raises(expected, match=r"Invalid value for argument `rate`.*Received: rate="):
        case.make(**required_kwargs(case), rate=value)


@pytest.mark.parametrize("value", BAD_NOISE_SHAPES, ids=repr)
@pytest.mark.parametrize("cls", [ScheduledDropout, MCDropout])
def test_bad_noise_shape_raises_what_keras_raises(cls, value):
    expected = keras_dropout_error(rate=0.5, noise_shape=value)
    with pytest.raises(expected, match=r"argument `noise_shape`.*Received: noise_shape="):
        cls(0.5, noise_shape=value)


SEED_CASES = [name for name in CASES if "-" not in name]


@pytest.mark.parametrize("seed", [-1, 2**31, 2**32, 10**30])
@pytest.mark.parametrize("name", SEED_CASES)
def test_seed_out_of_range_is_refused_alike_on_every_backend(name, seed):
    case = CASES[name]
    kwargs = dict(required_kwargs(case), seed=seed)
    if case.rate:
        kwargs["rate"] = 0.5
    with pytest.raises(ValueError, match=(
            r"Invalid value for argument `seed`: expected an int in \[0, 2\*\*31\) "
            rf"\(a seed every backend accepts\) or None. Received: seed={seed}$")):
        case.make(**kwargs)


@pytest.mark.parametrize("seed", [0, 2**31 - 1, np.int64(5)])
@pytest.mark.parametrize("name", SEED_CASES)
def test_seeds_at_the_ends_of_the_range_draw_masks(name, seed):
    case = CASES[name]
    kwargs = dict(case.kwargs, seed=seed)
    if case.rate:
        kwargs["rate"] = 0.5
    keras.utils.set_random_seed(0)  # the same initial weights for both layers
    layer = case.make(**kwargs)
    assert layer.seed == seed and type(layer.seed) is int
    x = np.ones(case.input_shape, "float32") + 1.0
    first, second = numpy(layer(x, training=True)), numpy(layer(x, training=True))
    assert first.shape == case.output_shape and not np.array_equal(first, second)
    keras.utils.set_random_seed(0)
    again = case.make(**kwargs)
    np.testing.assert_array_equal(numpy(again(x, training=True)), first)
