"""Training under Keras' own distribution engines (TensorFlow: MirroredStrategy
over two logical CPUs; JAX: keras.distribution over two host devices), in a
fresh process because both need their devices set before the backend starts.

The script trains a model with scheduled, proximal and group penalties (with
RegularizationScheduler and SparsityMonitor), a model with every dropout
variant at scheduled rates and a pruned model, once on one device and once
distributed.
"""

import textwrap

import numpy as np
import pytest
from conftest import BACKEND
from conftest import run_python

DISTRIBUTED_SCRIPT = """
import json
import numpy as np, keras, keras_regx as kr


class BatchLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(logs["loss"]))


def regularized_model():
    keras.utils.set_random_seed(0)
    ramp = kr.schedules.Linear(0.0, 1e-2, end_step=8)
    model = keras.Sequential([keras.Input((6,)),
        keras.layers.Dense(8, activation="relu", name="d1",
                           kernel_regularizer=kr.ElasticNet(0.05, ramp, proximal=True, name="enet")),
        keras.layers.Dense(4, activation="relu", name="d2",
                           kernel_regularizer=kr.GroupLasso(0.05, axis=0, proximal=True, name="group")),
        keras.layers.Dense(1, name="d3", kernel_regularizer=kr.L2(ramp, name="l2"),
                           bias_regularizer=keras.regularizers.L1(1e-3))])
    # Decoupled weight decay on a schedule, under the proximal steps.
    model.compile(kr.optimizers.ScheduledWeightDecay(keras.optimizers.SGD(0.05, momentum=0.5),
                                                     kr.schedules.Linear(0.0, 0.2, end_step=8)),
                  "mse")
    return model


def dropout_model():
    keras.utils.set_random_seed(0)
    rate = kr.schedules.Linear(0.1, 0.4, end_step=8)
    inputs = keras.Input((8, 4))
    h = kr.layers.DropBlock1D(rate, block_size=3, seed=1, name="block")(inputs)
    h = keras.layers.Flatten()(h)
    h = kr.layers.DropConnectDense(16, rate=rate, activation="relu", seed=2, name="connect")(h)
    h = kr.layers.ScheduledDropout(rate, seed=3, name="drop")(h)
    branch = keras.layers.Dense(16, name="branch")(h)
    h = keras.layers.Add()([h, kr.layers.DropPath(rate, seed=4, name="path")(branch)])
    outputs = kr.layers.ConcreteDropout(keras.layers.Dense(1), seed=5, mc_inference=False,
                                        name="concrete")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


def pruned_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="p1"),
                              keras.layers.Dense(1, name="p2")])
    model = kr.pruning.prune(model, kr.pruning.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=8,
                                                               frequency=2), scope="global")
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def train(make_scope):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    xd = rng.normal(size=(64, 8, 4)).astype("float32")
    result = {}
    for label, factory in (("single", None), ("distributed", make_scope)):
        scope = factory() if factory else None
        if scope is not None:
            scope.__enter__()
        model, dmodel, losses = regularized_model(), dropout_model(), BatchLosses()
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[
            kr.callbacks.RegularizationScheduler(),
            kr.callbacks.SparsityMonitor(structured=True), losses])
        dhistory = dmodel.fit(xd, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                              callbacks=[kr.callbacks.RegularizationScheduler()])
        pmodel = pruned_model()
        pmodel.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                   callbacks=[kr.callbacks.RegularizationDriver()])
        predicted = dmodel.predict(xd, verbose=0)
        shardings = sorted({str(getattr(w.value, "sharding", ""))
                            for w in model.weights + dmodel.weights})
        if scope is not None:
            scope.__exit__(None, None, None)
        # At inference the dropout layers are the identity: a copy of the
        # weights in a model built without distribution predicts the same.
        plain = dropout_model()
        plain.set_weights(dmodel.get_weights())
        result[label] = {
            "history": history.history,
            "batch_losses": losses.values,
            "weights": [w.tolist() for w in model.get_weights()],
            "exact_zeros": int(sum((w == 0).sum() for w in model.get_weights())),
            "rates": {k: v for k, v in dhistory.history.items() if k.endswith("/rate")},
            "dropout_losses": dhistory.history["loss"],
            "predict_gap": float(np.abs(predicted - plain.predict(xd, verbose=0)).max()),
            "shardings": shardings,
            "pruned_weights": [w.tolist() for w in pmodel.get_weights()],
            "pruned_kernels": [keras.ops.convert_to_numpy(pmodel.get_layer(n).kernel).tolist()
                               for n in ("p1", "p2")],
        }
    print(json.dumps(result))
"""


def _assert_distributed_matches_one_device(result, same_masks):
    one, many = result["single"], result["distributed"]
    assert sorted(one["history"]) == sorted(many["history"])
    assert "regularization_loss" in one["history"] and "sparsity/d2/inputs" in one["history"]
    assert one["history"]["weight_decay"] == pytest.approx([0.075, 0.175])  # steps 3 and 7
    for key, values in one["history"].items():
        np.testing.assert_allclose(many["history"][key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(many["batch_losses"], one["batch_losses"], rtol=1e-5)
    for a, b in zip(one["weights"], many["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert many["exact_zeros"] == one["exact_zeros"] > 0  # the proximal steps ran
    assert many["rates"] == one["rates"] and len(one["rates"]) == 4
    assert np.isfinite(many["dropout_losses"]).all()
    if same_masks:  # JAX draws the same numbers for a sharded array
        np.testing.assert_allclose(many["dropout_losses"], one["dropout_losses"], rtol=1e-5)
    assert many["predict_gap"] <= 1e-5
    # Pruning (global scope, masks updated every 2 of 8 steps): the same weights
    # and the same zeros, 75% of the two kernels together.
    for a, b in zip(one["pruned_weights"], many["pruned_weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    kernels = [np.array(k) for k in many["pruned_kernels"]]
    assert sum(int((k == 0).sum()) for k in kernels) == 56 - 14  # keep round(56 * 0.25)


if BACKEND == "tensorflow":

    def test_mirrored_strategy_matches_one_device(tmp_path):
        result = run_python(
            textwrap.dedent("""
            import tensorflow as tf
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            """)
            + DISTRIBUTED_SCRIPT
            + textwrap.dedent("""
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            assert strategy.num_replicas_in_sync == 2
            train(strategy.scope)
            """),
            tmp_path,
        )
        # Each replica draws its own dropout masks: not those of one device.
        _assert_distributed_matches_one_device(result, same_masks=False)


if BACKEND == "jax":

    @pytest.mark.parametrize("kind", ["data_parallel", "model_parallel"])
    def test_keras_distribution_matches_one_device(tmp_path, kind):
        result = run_python(
            textwrap.dedent("""
            import os
            os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
            import jax
            """)
            + DISTRIBUTED_SCRIPT
            + textwrap.dedent(f"""
            devices = jax.devices()
            assert len(devices) == 2
            if "{kind}" == "data_parallel":
                distribution = keras.distribution.DataParallel(devices=devices)
            else:  # kernels split over the two devices
                mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices=devices)
                layout = keras.distribution.LayoutMap(mesh)
                layout[".*d[12]/kernel"] = (None, "model")
                layout[".*connect/kernel"] = (None, "model")
                distribution = keras.distribution.ModelParallel(
                    layout_map=layout, batch_dim_name="batch")
            train(distribution.scope)
            """),
            tmp_path,
        )
        _assert_distributed_matches_one_device(result, same_masks=True)
        expected = "'batch': 2" if kind == "data_parallel" else "P(None, 'model')"
        assert any(expected in s for s in result["distributed"]["shardings"])
