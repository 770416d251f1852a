"""Magnitude pruning: TF Model Optimization's schedules, masks against NumPy,
pruning inside compiled `fit()` on every backend, saving, stripping, errors.
"""

import json
import warnings

import keras
import numpy as np
import pytest
from conftest import jit_compile_options
from conftest import run_python

import keras_regx as kr
from keras_regx import _masks
from keras_regx._backend import compiled
from keras_regx.pruning import ConstantSparsity
from keras_regx.pruning import PolynomialDecay
from keras_regx.pruning import Prune

STEPS = list(range(0, 40)) + [99, 100, 101, 1000, 2**31 + 5]


def tfmot_polynomial(step, initial, final, begin, end, power):
    """TF Model Optimization's `PolynomialDecay` value, in float32 as it computes it."""
    p = np.float32(step - begin) / np.float32(end - begin)
    p = min(np.float32(1.0), max(np.float32(0.0), p))
    return np.float32(initial - final) * (np.float32(1.0) - p) ** np.float32(power) + np.float32(final)


def tfmot_should_prune(step, begin, end, frequency):
    in_range = step >= begin and (step <= end or end < 0)
    return in_range and (step - begin) % frequency == 0


@pytest.mark.parametrize("args", [(0.0, 0.8, 0, 20, 3, 3), (0.2, 0.9, 5, 30, 2, 1), (0.5, 0.5, 0, 1, 1, 100)])
def test_polynomial_decay_is_tf_model_optimizations(args):
    initial, final, begin, end, power, frequency = args
    schedule = PolynomialDecay(initial, final, begin, end, power=power, frequency=frequency)
    for step in STEPS:
        want = float(tfmot_polynomial(step, initial, final, begin, end, power))
        assert schedule.value_at(step) == pytest.approx(want, rel=1e-6, abs=1e-7)
        assert schedule.updates_at(step) == tfmot_should_prune(step, begin, end, frequency)
    graph = [float(keras.ops.convert_to_numpy(schedule(s))) for s in STEPS[:40]]
    np.testing.assert_allclose(graph, [schedule.value_at(s) for s in STEPS[:40]], rtol=1e-6, atol=1e-7)
    graph_steps = [s for s in STEPS if s < 2**31]  # JAX's step counter is int32
    due = [bool(keras.ops.convert_to_numpy(schedule.should_update(s))) for s in graph_steps]
    assert due == [schedule.updates_at(s) for s in graph_steps]


def test_constant_sparsity_is_tf_model_optimizations():
    forever = ConstantSparsity(0.6, begin_step=10)
    window = ConstantSparsity(0.6, begin_step=10, end_step=250, frequency=40)
    for step in STEPS:
        assert forever.value_at(step) == pytest.approx(0.6)
        assert forever.updates_at(step) == tfmot_should_prune(step, 10, -1, 100)
        assert window.updates_at(step) == tfmot_should_prune(step, 10, 250, 40)
        if step < 2**31:  # JAX's step counter is int32
            assert bool(keras.ops.convert_to_numpy(window.should_update(step))) == window.updates_at(step)


@pytest.mark.parametrize("make, match", [
    (lambda: PolynomialDecay(0.0, 1.0, 0, 10), "`final_sparsity`"),
    (lambda: PolynomialDecay(-0.1, 0.5, 0, 10), "`initial_sparsity`"),
    (lambda: PolynomialDecay(0.0, 0.5, 10, 10), "`end_step`.*> begin_step=10"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, 10, power=0), "`power`"),
    (lambda: ConstantSparsity(0.5, 0, frequency=0), "`frequency`"),
    (lambda: ConstantSparsity(0.5, 20, end_step=10), "`end_step`.*or -1"),
    (lambda: ConstantSparsity(1.0, 0), "`target_sparsity`"),
    (lambda: Prune(1.0), "`sparsity`"),
    (lambda: Prune("half"), "`sparsity`"),
    (lambda: Prune(0.5, granularity="rows"), "`granularity`"),
    (lambda: Prune(0.5, granularity="4:2"), "`granularity`.*0 < N < M"),
    (lambda: Prune(0.5, granularity=(0, 2)), "`granularity`"),
    (lambda: Prune(0.5, granularity="2:4"), None),
    (lambda: Prune(0.3, granularity="2:4"), "`sparsity`.*2/4"),
    (lambda: Prune(0.5, scope="model"), "`scope`"),
    (lambda: Prune(0.5, granularity="unit", scope="global"), "`scope`.*granularity='weight'"),
])
def test_bad_arguments_are_named(make, match):
    if match is None:
        make()
        return
    with pytest.raises(ValueError, match=match):
        make()


# Masks against NumPy.


def _distinct(shape, seed):
    """Weights with distinct magnitudes (no ties at a threshold)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    values = (rng.permutation(n) + 1).astype("float32") / n
    return (values * rng.choice([-1.0, 1.0], n)).reshape(shape).astype("float32")


def _keep(n, sparsity):
    return max(int(np.round(np.float32(n) * (np.float32(1.0) - np.float32(sparsity)))), 1)


# Masks are found two ways: with the sparsity a tensor (compiled steps: a
# bisection) and with a Python number (eager steps: partial sorts).
SPARSITY_KNOWN_ON = ["host", "graph"]


def _masks_of(groups, sparsity, known_on):
    if known_on == "graph":
        sparsity = keras.ops.convert_to_tensor(sparsity, "float32")
    groups = [([keras.ops.convert_to_tensor(w) for w in weights], kind) for weights, kind in groups]
    return [keras.ops.convert_to_numpy(m) for m in _masks.masks(groups, sparsity)]


def _mask(w, kind, sparsity, known_on):
    return _masks_of([([w], kind)], sparsity, known_on)[0]


@pytest.mark.parametrize("known_on", SPARSITY_KNOWN_ON)
@pytest.mark.parametrize("shape", [(8, 6), (3, 3, 4, 5)])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_weight_mask_keeps_the_largest(shape, sparsity, known_on):
    w = _distinct(shape, 0)
    mask = _mask(w, "weight", sparsity, known_on)
    keep = _keep(w.size, sparsity)
    want = np.abs(w) >= np.sort(np.abs(w).ravel())[::-1][keep - 1]
    np.testing.assert_array_equal(mask, want.astype("float32"))
    assert int(mask.sum()) == keep


@pytest.mark.parametrize("known_on", SPARSITY_KNOWN_ON)
def test_global_masks_share_one_threshold(known_on):
    weights = [_distinct((8, 6), 1) * 3.0, _distinct((6, 4), 2)]
    masks = _masks_of([(weights, "weight")], 0.6, known_on)
    flat = np.concatenate([np.abs(w).ravel() for w in weights])
    threshold = np.sort(flat)[::-1][_keep(flat.size, 0.6) - 1]
    for w, m in zip(weights, masks):
        np.testing.assert_array_equal(m, (np.abs(w) >= threshold).astype("float32"))
    kept = [m.mean() for m in masks]
    assert kept[0] > kept[1]  # the larger kernel keeps more: one threshold


@pytest.mark.parametrize("known_on", SPARSITY_KNOWN_ON)
@pytest.mark.parametrize("shape", [(8, 6), (3, 3, 4, 5)])
def test_unit_mask_keeps_the_units_with_the_largest_norms(shape, known_on):
    w = _distinct(shape, 3)
    mask = _mask(w, "unit", 0.5, known_on)
    norms = np.sqrt((w.reshape(-1, shape[-1]) ** 2).sum(0))
    keep = _keep(shape[-1], 0.5)
    kept = norms >= np.sort(norms)[::-1][keep - 1]
    np.testing.assert_array_equal(mask, np.broadcast_to(kept.astype("float32"), shape))


@pytest.mark.parametrize("known_on", SPARSITY_KNOWN_ON)
@pytest.mark.parametrize("shape, block", [((8, 6), (2, 3)), ((7, 5), (2, 2)), ((3, 3, 2, 4), (3, 2))])
def test_block_mask_ranks_blocks_by_mean_magnitude(shape, block, known_on):
    w = _distinct(shape, 4)
    mask = _mask(w, ("block", block), 0.5, known_on)
    matrix = np.abs(w.reshape(-1, shape[-1]))
    rows, cols = matrix.shape
    r, c = block
    means = {}
    for i in range(0, rows, r):
        for j in range(0, cols, c):
            means[(i, j)] = matrix[i:i + r, j:j + c].mean()  # edge blocks: their own entries
    keep = _keep(len(means), 0.5)
    threshold = sorted(means.values(), reverse=True)[keep - 1]
    want = np.zeros_like(matrix)
    for (i, j), mean in means.items():
        want[i:i + r, j:j + c] = float(mean >= threshold)
    np.testing.assert_array_equal(mask.reshape(rows, cols), want)


@pytest.mark.parametrize("shape, n, m", [((8, 6), 2, 4), ((3, 3, 8, 5), 2, 4), ((12, 3), 1, 3)])
def test_n_m_mask_zeroes_the_n_smallest_of_every_m_inputs(shape, n, m):
    w = _distinct(shape, 5)
    mask = _mask(w, ("n:m", (n, m)), 0.5, "graph")
    groups = np.moveaxis(np.abs(w), -2, -1).reshape(-1, m)
    kept = np.moveaxis(mask, -2, -1).reshape(-1, m)
    assert (kept.sum(-1) == m - n).all()
    for g, k in zip(groups, kept):
        assert g[k == 0].max() < g[k == 1].min()


@pytest.mark.parametrize("known_on", SPARSITY_KNOWN_ON)
def test_kernels_of_one_size_are_searched_together_each_at_its_own_threshold(known_on):
    # Three kernels of 48 entries (stacked into one search), one of 24 and
    # one whose magnitudes tie at the threshold (all ties are kept).
    weights = [_distinct((8, 6), 10) * 10.0, _distinct((6, 8), 11), _distinct((4, 6), 12),
               _distinct((8, 6), 13) * 1e-3, np.ones((8, 6), "float32")]
    groups = [([w], "weight") for w in weights] + [([weights[1]], "unit")]
    masks = _masks_of(groups, 0.7, known_on)
    for w, m in zip(weights, masks):
        magnitude = np.abs(w).ravel()
        threshold = np.sort(magnitude)[::-1][_keep(magnitude.size, 0.7) - 1]
        np.testing.assert_array_equal(m, (np.abs(w) >= threshold).astype("float32"))
    assert masks[4].all()  # every entry ties with the threshold
    norms = np.sqrt((weights[1] ** 2).sum(0))
    kept = norms >= np.sort(norms)[::-1][_keep(8, 0.7) - 1]
    np.testing.assert_array_equal(masks[5], np.broadcast_to(kept, (6, 8)).astype("float32"))


def test_thresholds_in_a_compiled_function_match_the_host_ones():
    rows = [np.abs(_distinct((64,), seed)) for seed in range(3)] + [np.abs(_distinct((10,), 4))]

    def found(sparsity):
        return _masks.thresholds([keras.ops.convert_to_tensor(r) for r in rows], sparsity)

    in_graph = compiled(found)
    for sparsity in [0.0, 0.25, 0.5, 0.9]:
        host = [keras.ops.convert_to_numpy(t) for t in found(sparsity)]
        graph = [keras.ops.convert_to_numpy(t)
                 for t in in_graph(keras.ops.convert_to_tensor(sparsity, "float32"))]
        want = [np.sort(r)[::-1][_keep(r.size, sparsity) - 1] for r in rows]
        np.testing.assert_array_equal(host, want)
        np.testing.assert_array_equal(graph, want)


# Pruning in fit().


def _data(n=64, d=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, (x[:, :2].sum(1, keepdims=True) + 0.1 * rng.normal(size=(n, 1))).astype("float32")


def _mlp(units=16):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(units, activation="tanh", name="h"),
                             keras.layers.Dense(8, activation="tanh", name="g"),
                             keras.layers.Dense(1, name="o")])


def every_step(sparsity):
    """`sparsity` with masks recomputed after every update (a float alone
    waits for the 100th, as TF Model Optimization's `ConstantSparsity`)."""
    return ConstantSparsity(sparsity, begin_step=0, frequency=1)


class Zeros(keras.callbacks.Callback):
    """After every batch: each pruned kernel's fraction of zeros, and whether
    every masked entry is exactly zero."""

    def __init__(self, names):
        super().__init__()
        self.names, self.fractions, self.exact = names, [], True

    def on_train_batch_end(self, batch, logs=None):
        row = []
        for name in self.names:
            layer = self.model.get_layer(name)
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            mask = keras.ops.convert_to_numpy(layer.kernel_constraint.mask)
            self.exact &= bool((kernel[mask == 0] == 0).all())
            row.append(float((kernel == 0).mean()))
        self.fractions.append(row)


@pytest.mark.parametrize("jit_compile", jit_compile_options())
def test_sparsity_follows_the_schedule_inside_fit(jit_compile):
    x, y = _data()
    schedule = PolynomialDecay(0.0, 0.75, begin_step=1, end_step=9, frequency=2)
    pruned = kr.pruning.prune(_mlp(), schedule, layers=["h", "g"])
    pruned.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=jit_compile)
    seen = Zeros(["h", "g"])
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
               callbacks=[kr.callbacks.RegularizationDriver(), seen])
    assert seen.exact  # pruned weights exactly zero after every step
    # After batch b (step b + 1: updates counted from 1, as TF MOT counts
    # batches) the kernels hold the sparsity of the last update <= b + 1.
    expected, current = [], 0.0
    for step in range(1, 17):
        if schedule.updates_at(step):
            current = schedule.value_at(step)
        expected.append([1.0 - _keep(n, current) / n for n in (8 * 16, 16 * 8)])
    np.testing.assert_allclose(seen.fractions, expected, atol=1e-6)
    assert pruned.get_layer("o").kernel_constraint is None


def test_global_scope_meets_the_total_with_different_layer_sparsities():
    x, y = _data()
    pruned = kr.pruning.prune(_mlp(32), every_step(0.7), scope="global")
    pruned.compile(keras.optimizers.SGD(0.05), "mse")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    kernels = [keras.ops.convert_to_numpy(pruned.get_layer(n).kernel) for n in ("h", "g", "o")]
    total = sum(k.size for k in kernels)
    zeros = sum(int((k == 0).sum()) for k in kernels)
    assert zeros == total - _keep(total, 0.7)
    fractions = [float((k == 0).mean()) for k in kernels]
    assert len(set(fractions)) > 1, fractions


@pytest.mark.parametrize("granularity", ["unit", (2, 4), "2:4"])
def test_structured_granularities_hold_after_fit(granularity):
    x, y = _data()
    sparsity = 0.5
    pruned = kr.pruning.prune(_mlp(), every_step(sparsity), granularity=granularity, layers=["h"])
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    kernel = keras.ops.convert_to_numpy(pruned.get_layer("h").kernel)  # (8, 16)
    assert float((kernel == 0).mean()) == 0.5
    if granularity == "unit":
        assert sorted(set((kernel == 0).all(0).tolist())) == [False, True]
        assert ((kernel == 0).all(0) | (kernel != 0).all(0)).all()
    elif granularity == "2:4":
        assert ((kernel.reshape(2, 4, 16) == 0).sum(1) == 2).all()
    else:
        blocks = (kernel.reshape(4, 2, 4, 4) == 0).all(axis=(1, 3))
        assert ((kernel.reshape(4, 2, 4, 4) == 0).any(axis=(1, 3)) == blocks).all()


def test_n_m_masks_fixed_after_the_first_step_as_tf_model_optimization():
    # TF Model Optimization's `sparsity_m_by_n` updates the masks once, at
    # pruning step 1; `ConstantSparsity(0.5, begin_step=1, end_step=1)` too.
    x, y = _data()
    once = ConstantSparsity(0.5, begin_step=1, end_step=1)
    pruned = kr.pruning.prune(_mlp(), once, granularity="2:4", layers=["h"])
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    masks = []

    class Masks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            masks.append(keras.ops.convert_to_numpy(self.model.get_layer("h").kernel_constraint.mask))

    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
               callbacks=[kr.callbacks.RegularizationDriver(), Masks()])
    assert ((masks[0].reshape(2, 4, 16) == 0).sum(1) == 2).all()
    for mask in masks[1:]:
        np.testing.assert_array_equal(mask, masks[0])


def _sequence_model():
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 8)(inputs)
    h = keras.layers.Conv1D(8, 3, padding="same")(h)
    h = keras.layers.LSTM(8, return_sequences=True)(h)
    h = keras.layers.GRU(8)(h)
    h = keras.layers.EinsumDense("ab,bc->ac", output_shape=(4,))(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def _image_model():
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    h = keras.layers.DepthwiseConv2D(3, padding="same")(h)
    h = keras.layers.SeparableConv2D(8, 3, padding="same")(h)
    h = keras.layers.Conv2DTranspose(4, 2, strides=2)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


@pytest.mark.parametrize("make, data, pruned_weights", [
    (_sequence_model, lambda rng: rng.integers(0, 20, (16, 6)).astype("int32"),
     ["embeddings", "kernel", "kernel", "recurrent_kernel", "kernel", "recurrent_kernel",
      "kernel", "kernel"]),
    (_image_model, lambda rng: rng.normal(size=(16, 6, 6, 2)).astype("float32"),
     ["kernel", "kernel", "depthwise_kernel", "pointwise_kernel", "kernel", "kernel"]),
])
def test_every_kind_of_kernel_is_pruned_inside_fit(make, data, pruned_weights, tmp_path):
    # Embedding, convolutions (1-D, 2-D, depthwise, separable, transposed),
    # LSTM / GRU kernels and recurrent kernels, EinsumDense, Dense.
    rng = np.random.default_rng(0)
    x, y = data(rng), rng.normal(size=(16, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    pruned = kr.pruning.prune(make(), every_step(0.5))
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    weights = [v for v in pruned.trainable_variables if isinstance(v.constraint, Prune)]
    assert [v.path.split("/")[-1] for v in weights] == pruned_weights, [v.path for v in weights]
    for v in weights:
        value = keras.ops.convert_to_numpy(v)
        assert int((value == 0).sum()) == value.size - _keep(value.size, 0.5), v.path
    # Each mask is saved where its constraint lives (an RNN cell, a separable
    # convolution's two kernels) and loads with it.
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.models.load_model(tmp_path / "pruned.keras")
    again = [v for v in loaded.trainable_variables if isinstance(v.constraint, Prune)]
    assert [v.path for v in again] == [v.path for v in weights]
    for v, w in zip(again, weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v.constraint.mask),
                                      keras.ops.convert_to_numpy(w.constraint.mask))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), keras.ops.convert_to_numpy(w))


def test_a_prune_constraint_declared_on_a_layer():
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, name="h", kernel_constraint=Prune(every_step(0.5), constraint=keras.constraints.NonNeg())),
        keras.layers.Dense(1, name="o"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    kernel = keras.ops.convert_to_numpy(model.get_layer("h").kernel)
    assert float((kernel == 0).mean()) >= 0.5 and (kernel >= 0).all()


def test_proximal_l1_and_pruning_on_one_weight():
    from keras_regx import _proximal

    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, name="h", kernel_regularizer=kr.L1(0.02, proximal=True),
                           kernel_constraint=Prune(every_step(0.5))),
        keras.layers.Dense(1, name="o"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    monitor = kr.callbacks.SparsityMonitor()
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[kr.callbacks.RegularizationDriver(), monitor])
    layer = model.get_layer("h")
    # The soft-threshold first, then the mask, after every update.
    assert isinstance(layer.kernel.constraint, _proximal.ProximalStep)
    assert layer.kernel.constraint.constraint is layer.kernel_constraint
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    mask = keras.ops.convert_to_numpy(layer.kernel_constraint.mask)
    assert float((mask == 0).mean()) == 0.5 and (kernel[mask == 0] == 0).all()
    assert history.history["sparsity/h"][-1] == pytest.approx(float((kernel == 0).mean()))


def test_forgetting_the_driver_warns_naming_the_constraint():
    x, y = _data()
    pruned = kr.pruning.prune(_mlp(), 0.5, layers=["h"])
    pruned.compile("sgd", "mse")
    with pytest.warns(UserWarning, match="Prune.*RegularizationDriver"):
        pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_errors_before_training_name_the_weight():
    x, y = _data()
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="h",
                                                                  kernel_constraint=Prune(0.5, granularity="2:4"))])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="`granularity`.*'.*h/kernel'.*which M does not divide"):
        model.fit(x[:, :6], y, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="h",
                                                                  kernel_constraint=Prune(0.5, granularity=(4, 4)))])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="block \\(4, 4\\) is larger"):
        model.fit(x[:, :6], y, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    shared = Prune(0.5)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, kernel_constraint=shared),
                              keras.layers.Dense(1, kernel_constraint=shared)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="holds the mask of one weight"):
        model.fit(x, y, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])


def test_prune_checks_its_layers():
    model = _mlp()
    with pytest.raises(ValueError, match="`layers`.*'nope' is not a layer"):
        kr.pruning.prune(model, 0.5, layers=["nope"])
    flat = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Flatten(name="flat")])
    with pytest.raises(ValueError, match="`layers`.*'flat' \\(Flatten\\) has no weight to prune"):
        kr.pruning.prune(flat, 0.5, layers=["flat"])
    with pytest.raises(ValueError, match="no Conv2D layer"):
        kr.pruning.prune(model, 0.5, layers=[keras.layers.Conv2D])
    typed = kr.pruning.prune(model, 0.5, layers=[keras.layers.Dense])
    assert all(isinstance(l.kernel_constraint, Prune) for l in typed.layers)
    with pytest.raises(ValueError, match="pruned already"):
        kr.pruning.prune(typed, 0.5)


def test_nested_models_and_other_kernels_are_pruned():
    inner = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.DepthwiseConv2D(3, name="depthwise")], name="inner")
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Flatten()(inner(inputs))
    outputs = keras.layers.Dense(1, name="o")(x)
    model = keras.Model(inputs, outputs)
    pruned = kr.pruning.prune(model, every_step(0.5))
    inner_copy = pruned.get_layer("inner")
    assert isinstance(inner_copy.get_layer("conv").kernel_constraint, Prune)
    assert isinstance(inner_copy.get_layer("depthwise").depthwise_constraint, Prune)
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    pruned.compile("sgd", "mse")
    pruned.fit(x, np.ones((4, 1), "float32"), verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    for layer, weight in ((inner_copy.get_layer("conv"), "kernel"),
                          (inner_copy.get_layer("depthwise"), "kernel")):
        assert float((keras.ops.convert_to_numpy(getattr(layer, weight)) == 0).mean()) == 0.5


def test_save_load_in_a_fresh_process_keeps_the_masks_and_resumes(tmp_path):
    x, y = _data()
    schedule = PolynomialDecay(0.0, 0.75, begin_step=0, end_step=12, frequency=4)
    pruned = kr.pruning.prune(_mlp(), schedule, layers=["h"])
    pruned.compile(keras.optimizers.SGD(0.05), "mse")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
               callbacks=[kr.callbacks.RegularizationDriver()])
    pruned.save(tmp_path / "pruned.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    mask = keras.ops.convert_to_numpy(pruned.get_layer("h").kernel_constraint.mask)
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
               callbacks=[kr.callbacks.RegularizationDriver()])
    got = run_python("""
        import json, numpy as np, keras, keras_regx as kr
        model = keras.models.load_model("pruned.keras", safe_mode=True)
        layer = model.get_layer("h")
        before = keras.ops.convert_to_numpy(layer.kernel_constraint.mask).tolist()
        model.fit(np.load("x.npy"), np.load("y.npy"), batch_size=8, epochs=1, verbose=0,
                  shuffle=False, callbacks=[kr.callbacks.RegularizationDriver()])
        print(json.dumps({"mask": before, "kernel": keras.ops.convert_to_numpy(layer.kernel).tolist()}))
    """, tmp_path)
    np.testing.assert_array_equal(np.array(got["mask"]), mask)
    want = keras.ops.convert_to_numpy(pruned.get_layer("h").kernel)
    np.testing.assert_allclose(np.array(got["kernel"]), want, rtol=1e-5, atol=1e-6)
    assert float((want == 0).mean()) == 0.75


def test_strip_gives_a_plain_keras_model(tmp_path):
    x, y = _data()
    pruned = kr.pruning.prune(_mlp(), every_step(0.6))
    pruned.compile("sgd", "mse")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    plain = kr.pruning.strip(pruned)
    assert "keras_regx" not in json.dumps(plain.get_config())
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), rtol=1e-6)
    plain.save(tmp_path / "plain.keras")
    np.save(tmp_path / "x.npy", x)
    got = run_python("""
        import json, sys, numpy as np, keras
        model = keras.models.load_model("plain.keras")
        kernels = [keras.ops.convert_to_numpy(l.kernel) for l in model.layers]
        print(json.dumps({"imported": "keras_regx" in sys.modules,
                          "zeros": [float((k == 0).mean()) for k in kernels],
                          "y": keras.ops.convert_to_numpy(model(np.load("x.npy"))).tolist()}))
    """, tmp_path)
    assert got["imported"] is False
    assert got["zeros"] == [1.0 - _keep(k.size, 0.6) / k.size for k in
                            (np.zeros((8, 16)), np.zeros((16, 8)), np.zeros((8, 1)))]
    np.testing.assert_allclose(np.array(got["y"]), plain.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_no_warning_when_driven():
    x, y = _data()
    pruned = kr.pruning.prune(_mlp(), 0.5)
    pruned.compile("sgd", "mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


@pytest.mark.parametrize("first", ["driver", "backup"])
def test_backup_and_restore_keeps_the_masks_and_the_schedule(tmp_path, first):
    x, y = _data()
    schedule = PolynomialDecay(0.0, 0.75, begin_step=0, end_step=24, frequency=4)

    def fit(model, epochs, *extra):
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        driver = kr.callbacks.RegularizationDriver()
        callbacks = [driver, backup] if first == "driver" else [backup, driver]
        model.compile(keras.optimizers.SGD(0.05), "mse")
        return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
                         callbacks=callbacks + list(extra))

    whole = kr.pruning.prune(_mlp(), schedule, layers=["h"])
    whole.compile(keras.optimizers.SGD(0.05), "mse")
    whole.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False,
              callbacks=[kr.callbacks.RegularizationDriver()])
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(kr.pruning.prune(_mlp(), schedule, layers=["h"]), 4, _Interrupt())
    # A new process would build a new model; the backup restores it, masks included.
    resumed = kr.pruning.prune(_mlp(), schedule, layers=["h"])
    history = fit(resumed, 4)
    assert len(history.epoch) == 2  # epochs 2 and 3
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(resumed.get_layer("h").kernel_constraint.mask),
        keras.ops.convert_to_numpy(whole.get_layer("h").kernel_constraint.mask))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(resumed.get_layer("h").kernel),
                               keras.ops.convert_to_numpy(whole.get_layer("h").kernel),
                               rtol=1e-5, atol=1e-6)


def _guide_step(model, optimizer, x, y, update_masks=True):
    """One step of the training loop of Keras' guide for this backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.ops.mean((model(x, training=True) - y) ** 2)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    elif backend == "torch":
        loss = keras.ops.mean((model(x, training=True) - y) ** 2)
        model.zero_grad()
        loss.backward()
        optimizer.apply([v.value.grad for v in model.trainable_variables], model.trainable_variables)
    else:
        import jax

        def loss_fn(trainable, non_trainable):
            predicted, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return keras.ops.mean((predicted - y) ** 2), non_trainable

        @jax.jit
        def train_step(state):
            trainable, non_trainable, optimizer_values = state
            grads = jax.grad(loss_fn, has_aux=True)(trainable, non_trainable)[0]
            trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable)
            if update_masks:
                trainable, non_trainable = kr.pruning.stateless_update(
                    model, trainable, non_trainable, optimizer_values)
            return trainable, non_trainable, optimizer_values

        state = train_step(([v.value for v in model.trainable_variables],
                            [v.value for v in model.non_trainable_variables],
                            [v.value for v in optimizer.variables]))
        for variables, values in zip(
                (model.trainable_variables, model.non_trainable_variables, optimizer.variables), state):
            for variable, value in zip(variables, values):
                variable.assign(value)


def _guide_loop(schedule):
    """A model pruned on `schedule`, its optimizer, data and the driver's
    callback list begun (`on_train_begin`, `on_epoch_begin(0)`)."""
    x, y = (keras.ops.convert_to_tensor(a) for a in _data(16))
    model = kr.pruning.prune(_mlp(), schedule, layers=["h"])
    optimizer = keras.optimizers.SGD(0.05)
    model.compile(optimizer, "mse")
    optimizer.build(model.trainable_variables)
    callbacks = keras.callbacks.CallbackList([kr.callbacks.RegularizationDriver()], model=model)
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    return model, optimizer, x, y, callbacks


def _custom_loop_step(update_masks=True):
    """One step of the training loop of Keras' guide for this backend on a
    model pruned to 0.5 from the first update; returns the model."""
    model, optimizer, x, y, callbacks = _guide_loop(ConstantSparsity(0.5, begin_step=0, frequency=1))
    callbacks.on_train_batch_begin(0)
    _guide_step(model, optimizer, x, y, update_masks)
    callbacks.on_train_batch_end(0)
    return model


def test_custom_training_loops():
    """The loops of Keras' guides prune as `fit()` does: on TensorFlow and
    PyTorch the constraint runs in `optimizer.apply`; JAX's stateless loop
    passes its state through `kr.pruning.stateless_update`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = _custom_loop_step()
    kernel = keras.ops.convert_to_numpy(model.get_layer("h").kernel)
    assert float((kernel == 0).mean()) == 0.5
    mask = keras.ops.convert_to_numpy(model.get_layer("h").kernel_constraint.mask)
    np.testing.assert_array_equal(mask, (kernel != 0).astype("float32"))


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch's fit() sets the constraints aside")
def test_torch_fit_applies_the_masks_after_its_step_in_place_of_the_constraints(monkeypatch):
    """Keras' checked assign of each constrained weight cost more than the
    masks themselves: `fit()`'s steps set the masks' constraints aside and
    multiply every kernel at once after the update; the constraints are back
    after each step, a failed one too, and run where no driver began the step."""
    calls = []
    original = Prune.__call__
    monkeypatch.setattr(Prune, "__call__", lambda self, w: (calls.append(self.name), original(self, w))[1])
    fail = []

    def loss(y_true, y_pred):
        if fail:
            raise RuntimeError("a failing step")
        return keras.ops.mean((y_true - y_pred) ** 2)

    x, y = _data()
    pruned = kr.pruning.prune(_mlp(), every_step(0.5), layers=["h", "g"])
    pruned.compile(keras.optimizers.Adam(0.01), loss)
    seen = Zeros(["h", "g"])
    driver = kr.callbacks.RegularizationDriver()
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[driver, seen])
    assert calls == [] and seen.exact
    assert seen.fractions[-1] == [0.5, 0.5]
    layers = [pruned.get_layer(name) for name in ("h", "g")]
    assert all(layer.kernel.constraint is layer.kernel_constraint for layer in layers)
    fail.append(True)
    with pytest.raises(RuntimeError, match="a failing step"):
        pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[driver])
    assert all(layer.kernel.constraint is layer.kernel_constraint for layer in layers)
    fail.clear()
    pruned.train_on_batch(x[:8], y[:8])
    assert sorted(calls) == sorted(layer.kernel_constraint.name for layer in layers)
    for layer in layers:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        mask = keras.ops.convert_to_numpy(layer.kernel_constraint.mask)
        assert (kernel[mask == 0] == 0).all() and float((mask == 0).mean()) == 0.5


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="JAX's loops update masks through stateless_update")
def test_a_loop_after_the_driver_ended_follows_the_step_count():
    """Steps of a loop without the driver, after one with it ended, update
    the masks as the optimizer's step count says (on PyTorch the driver had
    passed each step's sparsity from the host; it forgets it at the end)."""
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=8, frequency=1)
    model, optimizer, x, y, callbacks = _guide_loop(schedule)
    for step in range(2):
        callbacks.on_train_batch_begin(step)
        _guide_step(model, optimizer, x, y)
        callbacks.on_train_batch_end(step)
    callbacks.on_epoch_end(0)
    callbacks.on_train_end()
    kernel = model.get_layer("h").kernel
    assert int((keras.ops.convert_to_numpy(kernel) == 0).sum()) == 8 * 16 - _keep(8 * 16, schedule.value_at(2))
    for _ in range(3):
        _guide_step(model, optimizer, x, y)
    assert int((keras.ops.convert_to_numpy(kernel) == 0).sum()) == 8 * 16 - _keep(8 * 16, schedule.value_at(5))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="only JAX's stateless loops skip the masks")
def test_a_jax_loop_without_stateless_update_warns_and_prunes_nothing():
    with pytest.warns(UserWarning, match="kr.pruning.stateless_update"):
        model = _custom_loop_step(update_masks=False)
    assert not (keras.ops.convert_to_numpy(model.get_layer("h").kernel) == 0).any()


def test_stateless_update_checks_its_arguments():
    model = kr.pruning.prune(_mlp(), 0.5, layers=["h"])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.optimizer.build(model.trainable_variables)
    state = [[v.value for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables)]
    with pytest.raises(ValueError, match="no `keras_regx.callbacks.RegularizationDriver` has installed.*on_train_begin"):
        kr.pruning.stateless_update(model, *state)
    keras.callbacks.CallbackList([kr.callbacks.RegularizationDriver()], model=model).on_train_begin()
    with pytest.raises(ValueError, match="`non_trainable_values`: expected one value per variable "
                                         "of `model.non_trainable_variables` \\(1;.*Received: 0"):
        kr.pruning.stateless_update(model, *state)
