"""Writes `saved_<backend>.keras` and `saved_<backend>.npz`: a model holding
every keras_regx object that saves state, trained a few steps with the
scheduler, and the value of each of its variables (by path).

The files in this folder were written by keras_regx 0.1.0.dev0 at commit
80eb706 (before the package's modules were reorganised);
`tests/test_saving.py` checks that they still load with every value. Run again only to add a case, never to make a
failing load pass:

    KERAS_BACKEND=<backend> python tests/data/make_saved_models.py
"""

import os

import keras
import numpy as np

import keras_regx as kr

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    keras.utils.set_random_seed(0)
    ramp = kr.schedules.Linear(0.0, 1e-2, end_step=20)
    rate = kr.schedules.Join([kr.schedules.Constant(0.1), kr.schedules.Cosine(0.2, 0.05, end_step=9)],
                             boundaries=[3])
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv",
                            kernel_regularizer=kr.GroupLasso(1e-3, axis=-1, name="groups"))(inputs)
    x = kr.layers.DropBlock2D(0.1, block_size=3, seed=1, name="drop_block")(x)
    x = keras.layers.Flatten()(x)
    x = kr.layers.ScheduledDropout(rate, seed=2, name="scheduled_dropout")(x)
    x = kr.layers.DropConnectDense(8, rate=0.2, seed=3, name="drop_connect",
                                   kernel_regularizer=kr.ElasticNet(ramp, 1e-3, name="enet"))(x)
    x = kr.layers.MCDropout(0.1, seed=4, name="mc_dropout")(x)
    branch = keras.layers.Dense(8, name="branch", kernel_regularizer=kr.L1(ramp, proximal=True, name="prox"),
                                bias_regularizer=kr.L2(1e-4, name="l2"))(x)
    x = keras.layers.Add()([x, kr.layers.DropPath(0.2, seed=5, name="drop_path")(branch)])
    x = kr.layers.ConcreteDropout(keras.layers.Dense(4, name="wrapped"), seed=6, name="concrete")(x)
    outputs = keras.layers.Dense(1, name="head", kernel_regularizer=kr.L2(ramp, name="l2_ramp"))(x)
    model = keras.Model(inputs, outputs)
    optimizer = kr.optimizers.ScheduledWeightDecay(
        keras.optimizers.SGD(0.01, momentum=0.9), kr.schedules.Linear(1e-3, 0.0, end_step=10))
    model.compile(optimizer, "mse")
    return model


def state(model):
    """Every variable of the model and of its optimizer."""
    return model.variables + model.optimizer.variables


def main():
    model = build()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 2)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False,
              callbacks=[kr.callbacks.RegularizationScheduler()])
    backend = keras.backend.backend()
    model.save(os.path.join(HERE, f"saved_{backend}.keras"))
    values = {}  # "<index> <path>": value, in the order of `state(model)`
    for i, variable in enumerate(state(model)):
        values[f"{i:04d} {variable.path}"] = keras.ops.convert_to_numpy(variable)
    np.savez(os.path.join(HERE, f"saved_{backend}.npz"), **values)


if __name__ == "__main__":
    main()
