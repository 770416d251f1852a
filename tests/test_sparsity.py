import gc
import weakref

import keras
import numpy as np
import pytest

import keras_regx as kr
from keras_regx import _counting
from keras_regx import schedules
from keras_regx import sparsity

THRESHOLDS = [0.0, 1e-3, 0.25, 0.5]


def np_is_zero(w, threshold):
    # The threshold is compared in the weight's dtype, as NumPy does with a
    # Python float (NEP 50).
    return np.abs(w) <= w.dtype.type(threshold)


def np_zero_count(w, threshold):
    return int(np.count_nonzero(np_is_zero(w, threshold)))


def np_dead(w, threshold, axis):
    others = tuple(a for a in range(w.ndim) if a != axis % w.ndim)
    return int(np.all(np_is_zero(w, threshold), axis=others).sum())


def sparse_array(rng, shape, special=True):
    """Normal entries with exact zeros, +-0.25, +-0.5, tiny values, NaN, inf."""
    w = rng.normal(size=shape).astype("float32")
    pick = rng.random(shape)
    w[pick < 0.3] = 0.0
    w[(pick >= 0.3) & (pick < 0.35)] = -0.0
    w[(pick >= 0.35) & (pick < 0.4)] = 0.25
    w[(pick >= 0.4) & (pick < 0.45)] = -0.5
    w[(pick >= 0.45) & (pick < 0.5)] = 1e-3
    if special:
        w[(pick >= 0.5) & (pick < 0.52)] = np.nan
        w[(pick >= 0.52) & (pick < 0.53)] = np.inf
        w[(pick >= 0.53) & (pick < 0.54)] = -np.inf
    return w


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_counts_match_numpy(threshold, as_tensor):
    w = sparse_array(np.random.default_rng(0), (37, 23))
    x = keras.ops.convert_to_tensor(w) if as_tensor else w
    expected = np_zero_count(w, threshold)
    assert int(sparsity.zero_count(x, threshold)) == expected
    assert float(sparsity.fraction_zero(x, threshold)) == np.float32(expected / w.size)


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("shape,axis", [((7, 5), -1), ((7, 5), 0), ((3, 3, 4, 6), -1),
                                        ((3, 3, 4, 6), 2), ((9,), 0)])
def test_structured_counts_match_numpy(threshold, shape, axis):
    rng = np.random.default_rng(1)
    w = sparse_array(rng, shape)
    w[..., 0] = 0.0
    w[..., -1] = threshold  # dead exactly at the threshold
    if len(shape) == 2:
        w[1, :] = -0.0
    expected = np_dead(w, threshold, axis)
    assert int(sparsity.structured_count(w, threshold, axis)) == expected
    assert float(sparsity.structured_fraction(w, threshold, axis)) == np.float32(
        expected / shape[axis]
    )


def test_nan_is_not_zero():
    w = np.array([np.nan, np.inf, -np.inf, 0.0, np.nan], "float32")
    assert int(sparsity.zero_count(w)) == 1
    assert int(sparsity.zero_count(w, 1e30)) == 1
    kernel = np.zeros((3, 2), "float32")
    kernel[0, 0] = np.nan
    assert int(sparsity.structured_count(kernel)) == 1


def nested_model():
    """A Functional model with a Sequential inside, a shared layer, several
    kernels in one layer and two layers named `proj`.

    Returns the model and, per expected key, the NumPy values of the layer's
    weights as `(weight name, array)` pairs.
    """
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="inner_a"),
         keras.layers.Dense(4, name="proj")],
        name="inner",
    )
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.SeparableConv2D(3, 3, name="sep")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, name="proj")(x)
    x = shared(shared(inner(x)))
    outputs = keras.layers.Dense(1, use_bias=False, name="head")(x)
    model = keras.Model(inputs, outputs)
    return model, fill_nested(model, np.random.default_rng(2))


def fill_nested(model, rng):
    """Sets new values on every weight of `nested_model()`; returns them as
    `nested_model` does."""
    inner = model.get_layer("inner")
    layers = {
        "conv": model.get_layer("conv"), "sep": model.get_layer("sep"),
        "proj": model.get_layer("proj"), "inner_a": inner.get_layer("inner_a"),
        "proj_1": inner.get_layer("proj"), "shared": model.get_layer("shared"),
        "head": model.get_layer("head"),
    }
    owned = {}
    for key, layer in layers.items():
        values = []
        for v in layer.weights:
            w = sparse_array(rng, tuple(v.shape), special=key == "conv")
            if v.name == "kernel" and w.ndim == 2:
                w[:, 0] = 0.0
                w[2, :] = 0.0
            if v.name == "kernel" and w.ndim == 4:
                w[..., 1] = 0.0
            values.append(w)
        layer.set_weights(values)
        owned[key] = [(v.name, w) for v, w in zip(layer.weights, values)]
    return owned


def np_model_sparsity(owned, threshold, per_layer, include_bias, structured):
    def own(key, kind):
        return [w for name, w in owned[key] if name == kind or name.endswith("_" + kind)]

    counted = [w for key in owned for w in own(key, "kernel")]
    if include_bias:
        counted += [w for key in owned for w in own(key, "bias")]
    zeros = sum(np_zero_count(w, threshold) for w in counted)
    result = {"sparsity": zeros / sum(w.size for w in counted)}
    if not per_layer:
        return result
    for key in owned:
        kernels = own(key, "kernel")
        result[f"sparsity/{key}"] = (
            sum(np_zero_count(w, threshold) for w in kernels)
            / sum(w.size for w in kernels)
        )
        if structured:
            result[f"sparsity/{key}/units"] = (
                sum(np_dead(w, threshold, -1) for w in kernels)
                / sum(w.shape[-1] for w in kernels)
            )
            dense = [w for w in kernels if w.ndim == 2]
            if dense:
                result[f"sparsity/{key}/inputs"] = (
                    sum(np_dead(w, threshold, 0) for w in dense)
                    / sum(w.shape[0] for w in dense)
                )
    return result


@pytest.mark.parametrize("threshold", [0.0, 0.25])
@pytest.mark.parametrize(
    "per_layer,include_bias,structured",
    [(True, False, True), (False, True, False), (True, True, False)],
)
def test_model_sparsity_matches_numpy(threshold, per_layer, include_bias, structured):
    model, owned = nested_model()
    got = sparsity.model_sparsity(model, threshold, per_layer, include_bias, structured)
    expected = np_model_sparsity(owned, threshold, per_layer, include_bias, structured)
    assert got == expected
    assert list(got) == list(expected)  # layers in the order they were added


def test_repeated_calls_read_new_weights_and_threshold():
    # The compiled pass is reused: it must read the weights' current values
    # (not those it was traced with, as jax.jit would keep) and honour a new
    # threshold.
    model, owned = nested_model()
    rng = np.random.default_rng(3)
    seen = []
    for threshold in [0.0, 0.5, 0.0, 0.25, 0.5]:
        for args in [(True, True, True), (False, False, False)]:
            got = sparsity.model_sparsity(model, threshold, *args)
            assert got == np_model_sparsity(owned, threshold, *args)
        seen.append(got["sparsity"])
        owned = fill_nested(model, rng)
    assert len(set(seen)) == len(seen)  # every call measured something new
    for layer in model.layers:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    assert set(sparsity.model_sparsity(model, 0.5, structured=True).values()) == {1.0}


def test_repeated_calls_compile_once(compilations):
    model, owned = nested_model()
    rng = np.random.default_rng(4)
    for _ in range(3):
        for threshold in [0.0, 0.25]:
            got = sparsity.model_sparsity(model, threshold, structured=True)
            assert got == np_model_sparsity(owned, threshold, True, False, True)
        owned = fill_nested(model, rng)
    assert compilations.compiled == 2  # one pass per threshold
    if keras.backend.backend() != "torch":  # PyTorch runs the pass eagerly
        assert compilations.traced == 2  # and no retracing


def test_cache_keeps_few_counters_per_model(compilations):
    # A sweep over more thresholds than the cache keeps per model compiles a
    # pass for each and keeps exactly the latest `MAX_COUNTERS` passes.
    kept = _counting.MAX_COUNTERS
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    thresholds = [i / 16 for i in range(kept + 2)]

    def compiles(threshold):
        before = compilations.compiled
        sparsity.model_sparsity(model, threshold=threshold)
        return compilations.compiled > before

    assert all(compiles(t) for t in thresholds)
    # The latest `kept` (the newest included) measure again without compiling...
    assert not any(compiles(t) for t in reversed(thresholds[2:]))
    # ... and no more are kept: the newest of those before them compiles again.
    assert compiles(thresholds[1]) and compiles(thresholds[0])


def test_cache_does_not_keep_model_alive(compilations):
    model, _ = nested_model()
    sparsity.model_sparsity(model, structured=True)
    sparsity.model_sparsity(model, structured=True)
    assert compilations.compiled == 1  # the cache holds the model's pass
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_layer_added_to_sequential():
    rng = np.random.default_rng(5)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="a")])
    a = sparse_array(rng, (6, 5))
    model.get_layer("a").set_weights([a, np.zeros(5, "float32")])
    first = {"sparsity": np_zero_count(a, 0.0) / a.size,
             "sparsity/a": np_zero_count(a, 0.0) / a.size,
             "sparsity/a/units": np_dead(a, 0.0, -1) / 5,
             "sparsity/a/inputs": np_dead(a, 0.0, 0) / 6}
    assert sparsity.model_sparsity(model, structured=True) == first
    model.add(keras.layers.Dense(3, name="b"))
    model.build((None, 6))
    b = np.zeros((5, 3), "float32")
    b[0, 1] = 1.0
    model.get_layer("b").set_weights([b, np.ones(3, "float32")])
    zeros = np_zero_count(a, 0.0) + 14
    assert sparsity.model_sparsity(model, structured=True) == {
        **first, "sparsity": zeros / 45,
        "sparsity/b": 14 / 15, "sparsity/b/units": 2 / 3, "sparsity/b/inputs": 4 / 5,
    }
    model.pop()
    assert sparsity.model_sparsity(model, structured=True) == first


def test_model_without_kernels():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    result = sparsity.model_sparsity(model)
    assert list(result) == ["sparsity"] and np.isnan(result["sparsity"])


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: sparsity.zero_count(np.ones(3), -0.1), ValueError,
         r"`threshold`: expected a float >= 0.0. Received: threshold=-0.1"),
        (lambda: sparsity.fraction_zero(np.ones(3), "0"), schedules.ArgumentTypeError,
         r"`threshold`"),
        (lambda: sparsity.zero_count(np.ones(3), float("nan")), ValueError, r"`threshold`.*finite"),
        (lambda: sparsity.structured_count(np.ones((2, 3)), axis=2), ValueError,
         r"`axis`.*\[-2, 2\).*Received: axis=2"),
        (lambda: sparsity.structured_fraction(np.ones((2, 3)), axis=1.0),
         schedules.ArgumentTypeError, r"`axis`"),
        (lambda: sparsity.model_sparsity(keras.Sequential(), per_layer=1),
         schedules.ArgumentTypeError, r"`per_layer`: expected a bool. Received: per_layer=1"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_top_level_access():
    assert kr.sparsity.model_sparsity is sparsity.model_sparsity


@pytest.mark.parametrize("model", [np.ones(3), None, "model", [keras.layers.Dense(1)]],
                         ids=["array", "None", "str", "list"])
def test_model_sparsity_names_a_model_of_the_wrong_type(model):
    with pytest.raises(TypeError, match=r"`model`: expected a keras.Model or a "
                       r"keras.layers.Layer. Received: model=.*\(of type"):
        sparsity.model_sparsity(model)
