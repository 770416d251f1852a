"""Keras' own serialization harness on every public serializable object.

`keras.src.testing.TestCase.run_class_serialization_test` round-trips an
object through `get_config` / `from_config` and through
`serialize_keras_object` / `deserialize_keras_object` (via JSON), and checks
that the revived object has the same config and the same attributes: the
check Keras runs on its own schedules, regularizers and callbacks.
"""

import inspect

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase

import keras_regx as kr
from keras_regx import callbacks
from keras_regx import optimizers
from keras_regx import pruning
from keras_regx import regularizers
from keras_regx import schedules

RAMP = schedules.Linear(0.0, 1e-3, begin_step=2, end_step=10)
KERAS_RAMP = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)

# One or more instances of every public schedule, with non-default arguments.
SCHEDULES = {
    "Constant": [schedules.Constant(0.25)],
    "Linear": [RAMP],
    "Polynomial": [schedules.Polynomial(1.0, 0.1, begin_step=3, end_step=30, power=0.5)],
    "Cosine": [schedules.Cosine(0.0, 1.0, begin_step=1, end_step=9)],
    "Exponential": [
        schedules.Exponential(2.0, 0.5, decay_steps=7, begin_step=3, staircase=True)
    ],
    "PiecewiseConstant": [
        schedules.PiecewiseConstant([0, 10, 20], [0.5, 0.25, 0.125, 0.0]),
        schedules.PiecewiseConstant([], [0.5]),
    ],
    "Join": [
        schedules.Join([RAMP, KERAS_RAMP], boundaries=[10]),
        schedules.Join(
            [schedules.Join([RAMP, schedules.Constant(1.0)], [10]), schedules.Constant(0.0)],
            boundaries=[100],
        ),
    ],
}

# Every public regularizer: constant and scheduled strengths, proximal variants.
REGULARIZERS = {
    "L1": [
        regularizers.L1(0.02),
        regularizers.L1(RAMP, name="sched_l1"),
        regularizers.L1(0.02, proximal=True),
        regularizers.L1(KERAS_RAMP, proximal=True),
    ],
    "L2": [regularizers.L2(0.02), regularizers.L2(RAMP, name="sched_l2")],
    "ElasticNet": [
        regularizers.ElasticNet(0.01, 0.02),
        regularizers.ElasticNet(RAMP, 0.02, name="sched_en"),
        regularizers.ElasticNet(0.01, RAMP, proximal=True),
    ],
    "GroupLasso": [
        regularizers.GroupLasso(0.01, axis=0),
        regularizers.GroupLasso(RAMP, axis=-1, proximal=True, name="sched_group"),
    ],
}

CALLBACKS = {
    "RegularizationDriver": [
        callbacks.RegularizationDriver(),
        callbacks.RegularizationDriver(update_freq="epoch", log=False),
    ],
    # The former name of the same class.
    "RegularizationScheduler": [
        callbacks.RegularizationScheduler(),
        callbacks.RegularizationScheduler(update_freq="epoch", log=False),
    ],
    "SparsityMonitor": [
        callbacks.SparsityMonitor(),
        callbacks.SparsityMonitor(
            threshold=1e-3, update_freq=3, include_bias=True, structured=True,
            regularization_loss=False,
        ),
    ],
}


def public_classes(module):
    """The concrete classes `module` lists in `__all__` (base classes left out)."""
    return {
        name
        for name in module.__all__
        if inspect.isclass(getattr(module, name))
        and name not in ("Schedule", "ScheduledRegularizer", "PruningSchedule")
    }


def cases(instances):
    return [
        pytest.param(instance, id=f"{name}-{i}")
        for name, objects in instances.items()
        for i, instance in enumerate(objects)
    ]


OPTIMIZERS = {
    "ScheduledWeightDecay": [
        optimizers.ScheduledWeightDecay(keras.optimizers.SGD(0.1), 0.01),
        optimizers.ScheduledWeightDecay(keras.optimizers.Adam(1e-3), RAMP, name="swd"),
        optimizers.ScheduledWeightDecay(keras.optimizers.Lion(1e-4), KERAS_RAMP),
    ],
}


PRUNING = {
    "PolynomialDecay": [
        pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100),
        pruning.PolynomialDecay(0.1, 0.5, begin_step=10, end_step=20, power=2, frequency=5),
    ],
    "ConstantSparsity": [
        pruning.ConstantSparsity(0.5, begin_step=0),
        pruning.ConstantSparsity(0.9, begin_step=3, end_step=30, frequency=1),
    ],
    "Prune": [
        pruning.Prune(),
        pruning.Prune(pruning.PolynomialDecay(0.0, 0.8, 0, 100), granularity=(2, 4), name="p"),
        pruning.Prune(0.5, granularity="2:4", constraint=keras.constraints.NonNeg()),
        pruning.Prune(RAMP, scope="global"),
    ],
}


@pytest.mark.parametrize(
    "module,instances",
    [(schedules, SCHEDULES), (regularizers, REGULARIZERS), (callbacks, CALLBACKS),
     (optimizers, OPTIMIZERS), (pruning, PRUNING)],
    ids=["schedules", "regularizers", "callbacks", "optimizers", "pruning"],
)
def test_every_public_class_is_covered(module, instances):
    assert set(instances) == public_classes(module)
    for name, objects in instances.items():
        assert all(type(o) is getattr(module, name) for o in objects)


@pytest.mark.parametrize(
    "instance",
    cases(SCHEDULES) + cases(REGULARIZERS) + cases(CALLBACKS) + cases(OPTIMIZERS) + cases(PRUNING)
)
def test_keras_class_serialization_harness(instance):
    revived = TestCase().run_class_serialization_test(instance)
    assert type(revived) is type(instance)
    assert revived.get_config() == instance.get_config()


@pytest.mark.parametrize("instance", cases(SCHEDULES))
def test_revived_schedule_has_the_same_values(instance):
    revived = TestCase().run_class_serialization_test(instance)
    steps = [0, 1, 2, 5, 9, 10, 11, 20, 21, 99, 100, 101, 10**6]
    assert [kr.schedules.value_at(revived, s) for s in steps] == [
        kr.schedules.value_at(instance, s) for s in steps
    ]


def trained_objects():
    """Regularizers and callbacks after a `fit()` that used them."""
    regs = [
        regularizers.L1(RAMP, proximal=True),
        regularizers.L2(RAMP),
        regularizers.ElasticNet(RAMP, 0.01),
        regularizers.GroupLasso(RAMP, proximal=True),
    ]
    used = [callbacks.RegularizationScheduler(), callbacks.SparsityMonitor(update_freq=1)]
    model = keras.Sequential(
        [keras.Input((4,))] + [keras.layers.Dense(2, kernel_regularizer=r) for r in regs]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse")
    model.fit(np.ones((8, 4)), np.ones((8, 2)), batch_size=4, epochs=2, verbose=0,
              callbacks=used)
    return regs + used


def test_keras_class_serialization_harness_after_fit():
    for instance in trained_objects()[:4]:
        TestCase().run_class_serialization_test(instance)


@pytest.mark.parametrize("index", [4, 5], ids=["RegularizationScheduler", "SparsityMonitor"])
def test_keras_class_serialization_harness_on_used_callbacks(index):
    TestCase().run_class_serialization_test(trained_objects()[index])
