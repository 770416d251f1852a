"""Custom training loops: Keras' guide loops driving the regularization driver
through `CallbackList` on a model never compiled, `state_values` carrying the
scheduled values into JAX's stateless state, and what a loop that leaves the
schedules undriven or has no optimizer is told."""

import warnings

import keras
import numpy as np
import pytest
from conftest import BACKEND
from conftest import scheduled_eval_model
from conftest import zeros

import keras_regx as kr
from keras_regx.callbacks import RegularizationScheduler

def test_a_custom_training_loop_computing_gradients_warns():
    model = scheduled_eval_model("custom")
    x, _ = zeros(2)
    model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        if BACKEND == "torch":
            import torch

            with torch.no_grad():  # PyTorch records gradients unless told not to
                model.losses
        else:
            model.losses  # a look at the penalties, no gradients
    with pytest.warns(UserWarning) as record:
        if BACKEND == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = keras.ops.sum(model.losses)
            tape.gradient(loss, model.trainable_weights)
        elif BACKEND == "jax":
            import jax

            def loss_fn(trainable):
                _, _, losses = model.stateless_call(
                    trainable, [v.value for v in model.non_trainable_variables], x,
                    return_losses=True)
                return sum(losses)

            jax.grad(loss_fn)([v.value for v in model.trainable_variables])
        else:
            keras.ops.sum(model.losses).backward()
    assert sorted(str(w.message).split(" but no")[0]
                  for w in record if w.category is UserWarning) == [
        "`ElasticNet` 'custom' has proximal=True",
        "`ElasticNet` 'custom' has scheduled 'l1'",
    ]


def _guide_loop(model, callbacks, scheduler, epochs, steps, feed=True):
    """The training loop of Keras' guide "writing a training loop from
    scratch" for this backend, on a model never compiled: the loss is the
    model's weight penalties alone (SGD(0): the weights stay). Returns the
    losses of the steps."""
    optimizer = keras.optimizers.SGD(0.0)
    optimizer.build(model.trainable_variables)
    x = np.ones((1, 2), "float32")
    if BACKEND == "jax":
        import jax

        def loss_fn(trainable, non_trainable, x):
            _, non_trainable, losses = model.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True)
            return sum(losses), non_trainable

        @jax.jit
        def step_fn(state, x):
            trainable, non_trainable, optimizer_values = state
            (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                trainable, non_trainable, x)
            trainable, optimizer_values = optimizer.stateless_apply(
                optimizer_values, grads, trainable)
            return loss, (trainable, non_trainable, optimizer_values)

        state = ([v.value for v in model.trainable_variables],
                 [v.value for v in model.non_trainable_variables],
                 [v.value for v in optimizer.variables])
    losses = []
    callbacks.on_train_begin()
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        for step in range(steps):
            callbacks.on_train_batch_begin(step)
            if BACKEND == "jax":
                if feed:
                    state = (state[0], scheduler.state_values(state[1]), state[2])
                loss, state = step_fn(state, x)
            elif BACKEND == "tensorflow":
                import tensorflow as tf

                with tf.GradientTape() as tape:
                    model(x, training=True)
                    loss = keras.ops.sum(model.losses)
                optimizer.apply(tape.gradient(loss, model.trainable_weights),
                                model.trainable_weights)
            else:
                model.zero_grad()
                model(x, training=True)
                loss = keras.ops.sum(model.losses)
                loss.backward()
                optimizer.apply([v.value.grad for v in model.trainable_weights],
                                model.trainable_weights)
            losses.append(float(keras.ops.convert_to_numpy(loss)))
            logs = {"loss": losses[-1]}
            callbacks.on_train_batch_end(step, logs)
        callbacks.on_epoch_end(epoch, {})
    callbacks.on_train_end()
    return losses


def test_guide_training_loops_follow_the_schedule():
    # Keras' custom-loop guides drive callbacks through CallbackList on a
    # model never compiled: the step is counted across epochs, and on JAX
    # `state_values` carries the values into the state the loop threads.
    reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4), name="l2")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        1, kernel_regularizer=reg, kernel_initializer="ones", use_bias=False)])
    logged = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            logged.append(logs["l2/l2"])

    scheduler = RegularizationScheduler()
    callbacks = keras.callbacks.CallbackList([scheduler, Spy()], model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the schedule is driven: no warning
        losses = _guide_loop(model, callbacks, scheduler, epochs=2, steps=3)
    strengths = [min(step / 4, 1.0) for step in range(6)]
    assert logged == pytest.approx(strengths)
    assert losses == pytest.approx([2.0 * s for s in strengths])  # l2 * sum(ones(2) ** 2)


def test_a_jax_loop_without_state_values_warns_once_naming_the_object():
    # Only JAX's stateless loop reads the state it is given; on TensorFlow
    # and PyTorch the same loop reads the variables and needs nothing.
    reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4), name="ramped")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        1, kernel_regularizer=reg, kernel_initializer="ones", use_bias=False)])
    scheduler = RegularizationScheduler()
    callbacks = keras.callbacks.CallbackList([scheduler], model=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = _guide_loop(model, callbacks, scheduler, epochs=1, steps=3, feed=False)
    messages = [str(w.message) for w in caught if "state_values" in str(w.message)]
    if BACKEND == "jax":
        assert len(messages) == 1 and "'ramped'" in messages[0]
        assert losses == pytest.approx([0.0, 0.0, 0.0])  # the state's value: schedule(0)
    else:
        assert messages == []
        assert losses == pytest.approx([0.0, 0.5, 1.0])


def test_state_values_before_on_train_begin_returns_the_values_as_given():
    reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_regularizer=reg)])
    scheduler = RegularizationScheduler()
    scheduler.set_model(model)
    values = [np.float32(7.0)]
    assert scheduler.state_values(values) == values


def test_state_values_checks_its_argument():
    reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_regularizer=reg)])
    scheduler = RegularizationScheduler()
    keras.callbacks.CallbackList([scheduler], model=model).on_train_begin()
    with pytest.raises(ValueError, match=r"`non_trainable_values`.*one value per variable.*\(1\).*0 values"):
        scheduler.state_values([])


def test_proximal_without_an_optimizer_is_a_clear_error():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(
        1, kernel_regularizer=kr.L1(0.1, proximal=True))])
    callbacks = keras.callbacks.CallbackList([RegularizationScheduler()], model=model)
    with pytest.raises(ValueError, match=r"L1\(proximal=True\)` on weight .*kernel.*needs the "
                                         r"optimizer.*model.compile\(optimizer="):
        callbacks.on_train_begin()
