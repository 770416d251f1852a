"""Callbacks that drive scheduled hyperparameters and monitor sparsity during `fit()`."""

import weakref

import keras
import numpy as np
from keras import ops

from keras_regx import _proximal
from keras_regx import _pruning
from keras_regx._backend import JaxStateWriter
from keras_regx._backend import threads_state
from keras_regx._backend import variable_writer
from keras_regx._counting import Counter
from keras_regx._engine import ScheduleEngine
from keras_regx._engine import schedule_keys
from keras_regx._engine import share_equal_schedules
from keras_regx._hyperparameters import STATE_FED
from keras_regx._hyperparameters import log_key
from keras_regx._hyperparameters import mark_driven
from keras_regx._model_walk import optimizers
from keras_regx._model_walk import scheduled_objects
from keras_regx._model_walk import updating_optimizer
from keras_regx._validation import ArgumentTypeError
from keras_regx._validation import check_bool
from keras_regx._validation import check_real
from keras_regx.optimizers import ScheduledWeightDecay

__all__ = [
    "RegularizationDriver",
    "RegularizationScheduler",
    "SparsityMonitor",
]

_PACKAGE = "keras_regx"
_UPDATE_FREQS = ("batch", "epoch")


# model -> the scheduled variables of its last fit (see `on_train_begin`).
_TRACED_WITH = weakref.WeakKeyDictionary()


def _same(variables, others):
    return variables is not None and len(variables) == len(others) and all(
        a is b for a, b in zip(variables, others))


def _retrace(model):
    """Makes `model`'s steps anew, so that they read its current variables."""
    if model.train_function is not None:
        model.make_train_function(force=True)
    model.test_function = None
    model.predict_function = None


def _scheduled_weight_decay(optimizer):
    """The `ScheduledWeightDecay` among `optimizer` and the ones it wraps."""
    return next((o for o in optimizers(optimizer) if isinstance(o, ScheduledWeightDecay)), None)


def _log_keys(objects):
    """`{(id(object), argument): key in logs}` for the scheduled arguments.

    Two objects may share a key (`"<name>/<arg>"`) only when their configs
    are equal, as for the copies `apply_regularization` makes: they then
    always hold the same values. Otherwise one would overwrite the other's
    value in `logs`, so that is refused.
    """
    keys, owners, configs = {}, {}, {}

    def config(obj):  # serialized only for a shared key (slow for many)
        if id(obj) not in configs:
            configs[id(obj)] = keras.saving.serialize_keras_object(obj)
        return configs[id(obj)]

    for obj in objects:
        for arg in obj.scheduled_hyperparameters:
            key = log_key(obj, arg)
            first = owners.setdefault(key, obj)
            if first is not obj and config(first) != config(obj):
                raise ValueError(
                    f"Two scheduled objects of the model log their `{arg}` under "
                    f"the same key '{key}' with different configs "
                    f"({type(first).__name__} and {type(obj).__name__} named "
                    f"'{obj.name}'), so one would overwrite the other in `logs`. "
                    "Give them different names (the `name=` argument)."
                )
            keys[(id(obj), arg)] = key
    return keys


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RegularizationDriver(keras.callbacks.Callback):
    """Drives keras_regx's training-time work during `fit()` (or a custom loop).

    Three jobs, each inside the compiled train step on every backend
    (tf.function with or without XLA, jax.jit, PyTorch):

    - **Schedules.** Finds every keras_regx object with a scheduled argument
      in the model (regularizers, scheduled dropout layers), sets each
      scheduled value to `schedule(step)` before the step runs, where `step`
      is the optimizer's iteration count (0 on the first batch), and writes
      the current values into `logs` under `"<object name>/<argument>"` so
      `History`, `CSVLogger`, `TensorBoard` and the progress bar show them
      (and, when the model's optimizer is a
      `kr.optimizers.ScheduledWeightDecay`, its value under `"weight_decay"`).
    - **Proximal steps.** Installs the proximal step of every regularizer
      built with `proximal=True` after each optimizer update.
    - **Pruning.** Creates the masks of the weights pruned with
      `keras_regx.pruning` and installs their updates after each optimizer
      update (see `keras_regx.pruning`).

    The schedules are evaluated on the host and the values written to the
    variables between steps. With `steps_per_execution=k` the value changes
    every k steps. Its work per step does not grow with the number of
    scheduled objects: each distinct schedule is evaluated once, each
    variable written only when its value changes, in one batch. Objects
    built on one schedule object share one variable, and when training
    starts the model's objects whose schedules are equal are made to share
    one too (only within the model).

    `RegularizationScheduler` is the same class under its former name:
    code and files that use it keep working.

    Args:
        update_freq: `"batch"` (every step) or `"epoch"` (at each epoch start).
        log: bool, whether to write the values into `logs`.

    Example:
    ```python
    >>> reg = kr.regularizers.L2(kr.schedules.Linear(0.0, 1e-3, end_step=4), name="l2")
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_regularizer=reg)])
    >>> model.compile("sgd", "mse")
    >>> history = model.fit(np.ones((8, 3)), np.ones((8, 1)), batch_size=4, epochs=2,
    ...                     verbose=0, callbacks=[kr.callbacks.RegularizationDriver()])
    >>> [round(v, 6) for v in history.history["l2/l2"]]
    [0.00025, 0.00075]
    ```
    """

    def __init__(self, update_freq: str = "batch", log: bool = True):
        super().__init__()
        if update_freq not in _UPDATE_FREQS:
            raise ValueError(
                "Invalid value for argument `update_freq`: expected one of "
                f"{_UPDATE_FREQS}. Received: update_freq={update_freq!r}"
            )
        self.update_freq = update_freq
        self.log = check_bool("log", log)
        # Our batch-end hook only copies host floats into `logs`, so Keras may
        # run it on its callback thread; a synchronous batch-end hook would
        # make every step wait for the device (about 10% on JAX). There it may
        # run after later batches began: it logs the values its batch began
        # with, kept by batch, not the ones set last.
        self.async_safe = True
        self._objects = []
        self._engine = None
        self._weight_decay = None  # a ScheduledWeightDecay of the model, logged
        self._writer = None  # JAX: writes into the running fit()'s state
        self._pruning_step = None  # sets pruning's step on eager backends
        self._pruning_check = None  # JAX: warns if a custom loop skips the masks
        self._assign = None  # writes the variables
        self._values = {}  # key -> the value set last; replaced, never changed
        self._used = {}  # batch -> `_values` as that batch began
        # Set at each epoch start; here too, so that a used callback has the
        # attributes of a new one (Keras' serialization checks compare them).
        self._accumulate = 1
        self._epoch_batches = 0
        self._first_batch = None
        self._batches = 0
        self.state_fed = False  # whether `state_values` was called (JAX loops)

    def get_config(self):
        return {"update_freq": self.update_freq, "log": self.log}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def on_train_begin(self, logs=None):
        model = self.model
        jax = threads_state()  # the step takes the state as arguments
        if jax:
            JaxStateWriter.close_all(model)  # left by a fit() that crashed
        # Steps traced before would not run new proximal steps or masks.
        retrace = _proximal.attach(model)
        retrace = _pruning.attach(model) or retrace
        self._objects = scheduled_objects(model)
        key_of = schedule_keys()  # each schedule's config serialized once
        if model.train_function is not None:
            # `fit()` (it made the function; a custom loop on a model never
            # fitted has none, and may hold the model's state already).
            share_equal_schedules(self._objects, key_of)
        for obj in self._objects:
            mark_driven(obj)
        self._engine = ScheduleEngine(self._objects, _log_keys(self._objects), key_of)
        self._weight_decay = _scheduled_weight_decay(getattr(model, "optimizer", None))
        self._values, self._used = {}, {}
        variables = self._engine.variables
        # A step traced before read the variables it was traced with: when
        # they are not this model's scheduled variables of its last fit (a
        # first fit, or objects made to share variables since), make the
        # steps anew.
        if not _same(_TRACED_WITH.get(model), variables):
            _TRACED_WITH[model] = list(variables)
            retrace = True
        if retrace:
            _retrace(model)
        self._writer = None
        # `fit()` makes its train function before this hook; a custom training
        # loop on a model never fitted has none (see `state_values`).
        if jax and variables and self.update_freq == "batch" and model.train_function is not None:
            self._writer = JaxStateWriter(model, variables)
        # A JAX loop of the user's, which may thread the state itself: warn
        # if it computes a step without `state_values` (see that method).
        self.state_fed = False
        custom_jax_loop = jax and variables and model.train_function is None
        for obj in self._objects:
            if custom_jax_loop:
                STATE_FED[obj] = self
            else:
                STATE_FED.pop(obj, None)
        self._batches = 0  # batches begun: the step where the model has no optimizer
        self._pruning_step = _pruning.host_stepper(model)  # eager backends: pruning's step
        self._pruning_check = _pruning.custom_loop_check(model)  # JAX: masks updated?
        self._assign = variable_writer(self._engine.variables, self._engine.current_values)

    def on_train_end(self, logs=None):
        if self._pruning_step is not None:
            self._pruning_step(None)  # later steps without the driver read the counter
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_epoch_begin(self, epoch, logs=None):
        # At an epoch start every backend re-reads the variables, and on JAX
        # the model state is synced, so a plain read and assign are right here.
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:  # a custom loop on a model never compiled: count
            self._accumulate = 1
            self._epoch_batches = self._batches
        else:
            optimizer = updating_optimizer(optimizer)
            # With gradient accumulation Keras counts batches in `_iterations`
            # and updates (every `accumulate`-th batch) in `iterations`; the
            # schedules follow the updates.
            self._accumulate = optimizer.gradient_accumulation_steps or 1
            self._epoch_batches = int(ops.convert_to_numpy(ops.convert_to_tensor(optimizer._iterations)))
        self._first_batch = None
        self._used = {}
        # Every value, changed or not: the variables may not hold the values
        # written last (a backup restored, the weights loaded, a crashed fit).
        self._set_step(self._epoch_batches // self._accumulate, self._assign, every=True)

    def on_train_batch_begin(self, batch, logs=None):
        if self._first_batch is None:
            self._first_batch = batch  # on_epoch_begin already set this step
        batches = self._epoch_batches + batch - self._first_batch
        self._batches = batches + 1
        if self._pruning_step is not None:
            self._pruning_step(batches // self._accumulate + 1)  # the update this batch makes
        if batch != self._first_batch:
            if self.update_freq == "batch":
                write = self._writer if self._writer is not None else self._assign
                self._set_step(batches // self._accumulate, write)
            elif self._weight_decay is not None:
                # The optimizer moves its value at every update, whatever
                # `update_freq` says of the other values: log each step's.
                self._set_step(batches // self._accumulate, write=None)
        if self.log:
            self._used[batch] = self._values

    def state_values(self, non_trainable_values):
        """`non_trainable_values` with the scheduled values of the current step.

        For JAX training loops that thread the model's state through
        `jax.jit` themselves (Keras' guide "Writing a training loop from
        scratch in JAX"): such a step reads the arrays the loop passes it,
        never the variables this callback writes. After
        `callbacks.on_train_batch_begin(step)`, pass the loop's non-trainable
        values through this method. Other backends read the variables, so
        their loops need nothing.

        Args:
            non_trainable_values: a list with one value per variable of
                `model.non_trainable_variables`, in that order.

        Returns:
            A new list: the scheduled entries replaced by their current
            values, every other entry as given.

        Example:
        ```python
        >>> reg = kr.L2(kr.schedules.Linear(0.0, 1.0, end_step=4), name="l2")
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_regularizer=reg)])
        >>> scheduler = kr.callbacks.RegularizationDriver()
        >>> callbacks = keras.callbacks.CallbackList([scheduler], model=model)
        >>> callbacks.on_train_begin(); callbacks.on_epoch_begin(0)
        >>> state = [v.value for v in model.non_trainable_variables]
        >>> for step in range(3):
        ...     callbacks.on_train_batch_begin(step)
        ...     state = scheduler.state_values(state)
        >>> [float(v) for v in state]
        [0.5]
        ```
        """
        self.state_fed = True
        variables = self.model.non_trainable_variables
        if len(non_trainable_values) != len(variables):
            raise ValueError(
                "Invalid value for argument `non_trainable_values`: expected one "
                f"value per variable of `model.non_trainable_variables` "
                f"({len(variables)}). Received: {len(non_trainable_values)} values"
            )
        index = {id(v): i for i, v in enumerate(variables)}
        values = list(non_trainable_values)
        engine = self._engine
        if engine is None:  # before `on_train_begin`: nothing is scheduled yet
            return values
        for variable, cell in zip(engine.variables, engine.cells):
            values[index[id(variable)]] = np.asarray(cell.value, variable.dtype)
        return values

    def _set_step(self, step, write, every=False):
        """Moves every schedule to `step`; `write` stores the changed values.

        With `write=None` only the weight decay's logged value moves.
        """
        changed = write is not None and self._engine.set_step(step, write, every)
        if self._weight_decay is not None:
            # The optimizer computes its value in the update; this checks it
            # (naming the step) and logs it.
            value = self._weight_decay.current_weight_decay_at(step)
            changed = changed or value != self._values.get("weight_decay")
        if changed:
            # A new dict: the one a batch logged stays as it was.
            values = self._engine.values()
            if self._weight_decay is not None:
                values["weight_decay"] = value
            self._values = values

    def _values_of_batch(self, batch):
        """The values the step(s) that ended with `batch` ran with."""
        values = self._used.pop(batch, None)
        if values is None:
            # With `steps_per_execution > 1` a step began at an earlier batch.
            # (A copy: the training thread may add a batch meanwhile.)
            begun = [b for b in self._used.copy() if b < batch]
            values = self._used.pop(max(begun)) if begun else self._values
        return values

    def on_train_batch_end(self, batch, logs=None):
        if self._pruning_check is not None:
            self._pruning_check()
        if self.log and logs is not None:
            logs.update(self._values_of_batch(batch))

    def on_epoch_end(self, epoch, logs=None):
        # Keras has run every batch-end hook by now: the values set last are
        # those of the epoch's last step.
        if self.log and logs is not None:
            logs.update(self._values)


# The callback's former name: the same class, and configs saved under that
# name deserialize to it.
RegularizationScheduler = RegularizationDriver
keras.saving.get_custom_objects()[f"{_PACKAGE}>RegularizationScheduler"] = RegularizationDriver


def _check_update_freq(update_freq):
    if update_freq in ("epoch", "batch"):
        return update_freq
    if isinstance(update_freq, bool) or not isinstance(update_freq, (int, str)):
        raise ArgumentTypeError(
            "Invalid value for argument `update_freq`: expected 'epoch', 'batch' "
            "or a positive integer number of batches. "
            f"Received: update_freq={update_freq!r} (of type {type(update_freq).__name__})"
        )
    if isinstance(update_freq, str) or update_freq < 1:
        raise ValueError(
            "Invalid value for argument `update_freq`: expected 'epoch', 'batch' "
            f"or a positive integer number of batches. Received: update_freq={update_freq!r}"
        )
    return update_freq


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparsityMonitor(keras.callbacks.Callback):
    """Logs the fraction of (near-)zero weights of the model during `fit()`.

    Writes into `logs`, so `History`, `CSVLogger`, `TensorBoard` and the
    progress bar show the figures (place the monitor before `CSVLogger` and
    `TensorBoard` in the callback list: callbacks see `logs` in list order):

    - `"sparsity"`: kernel entries with `abs(w) <= threshold` / all kernel
      entries, over every layer, nested layers and sub-models included
      (biases too with `include_bias=True`);
    - with `per_layer=True`, `"sparsity/<layer name>"` per layer with a kernel;
    - with `structured=True`, `"sparsity/<layer>/units"` (fraction of all-zero
      output units of `Dense`, filters of convolutions: slices along the
      kernel's last axis) and, for 2-D kernels, `"sparsity/<layer>/inputs"`
      (fraction of all-zero input rows);
    - with `regularization_loss=True`, when some weight has a regularizer,
      `"regularization_loss"`: the sum of the weight penalties (Keras' and
      keras_regx regularizers, at their current strengths) at the measured
      weights, i.e. what they add to the loss of the next step. Beside the
      epoch's `loss` (a mean over its steps, data part plus penalties) it
      shows how much of the loss is regularization. Activity regularizers
      and `add_loss` terms depend on the inputs and are not included.

    The figures are those of `keras_regx.sparsity.model_sparsity`: one pass
    over all weights, compiled once per model (tf.function, jax.jit, eager
    PyTorch), then one transfer of a small vector of counts to the host. They
    equal what NumPy counts on the same weights. NaN and inf weights count as
    nonzero and never raise.

    With `update_freq="epoch"` the weights are measured at each epoch end and
    the monitor is `async_safe` (it adds no device wait to the steps). With
    `update_freq=N` (or `"batch"`, N=1) they are also measured after every N
    batches of an epoch, into the batch `logs` the progress bar shows; this
    makes Keras wait for each step to finish and, on JAX, syncs the model
    state at each measurement, so measure sparsely.

    Args:
        threshold: float >= 0; weights with `abs(w) <= threshold` count as zero.
        per_layer: bool, whether to log one figure per layer with a kernel.
        update_freq: `"epoch"`, `"batch"` or an int N >= 1 (every N batches,
            and at each epoch end).
        include_bias: bool, whether biases count in the global `"sparsity"`.
        structured: bool, whether to log the per-layer unit/input figures
            (needs `per_layer=True`).
        regularization_loss: bool, whether to log the weight penalties.

    Example:
    ```python
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="hidden")])
    >>> kernel = np.array([[0, 1], [0, 0], [0, 3], [0, 4]], "float32")
    >>> model.get_layer("hidden").set_weights([kernel, np.zeros(2, "float32")])
    >>> model.compile(keras.optimizers.SGD(0.0), "mse")
    >>> history = model.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=2, verbose=0,
    ...                     callbacks=[kr.callbacks.SparsityMonitor(structured=True)])
    >>> history.history["sparsity"], history.history["sparsity/hidden/units"]
    ([0.625, 0.625], [0.5, 0.5])
    ```
    """

    def __init__(self, threshold: float = 0.0, per_layer: bool = True,
                 update_freq: str | int = "epoch", include_bias: bool = False,
                 structured: bool = False, regularization_loss: bool = True):
        super().__init__()
        self.regularization_loss = check_bool("regularization_loss", regularization_loss)
        self.threshold = check_real("threshold", threshold, minimum=0.0)
        self.per_layer = check_bool("per_layer", per_layer)
        self.update_freq = _check_update_freq(update_freq)
        self.include_bias = check_bool("include_bias", include_bias)
        self.structured = check_bool("structured", structured)
        if structured and not per_layer:
            raise ValueError(
                "Invalid value for argument `structured`: the structured figures "
                "are per layer, so `structured=True` needs `per_layer=True`. "
                "Received: structured=True, per_layer=False"
            )
        self._every = None if update_freq == "epoch" else (
            1 if update_freq == "batch" else update_freq
        )
        # At epoch granularity the batch-end hook does nothing, so Keras may
        # dispatch it on its callback thread. A per-batch measurement reads
        # the model (on JAX: syncs its state), which must not race the steps.
        self.async_safe = self._every is None
        self._counter = None
        self._next = self._every  # set at each epoch start

    def get_config(self):
        return {
            "threshold": self.threshold,
            "per_layer": self.per_layer,
            "update_freq": self.update_freq,
            "include_bias": self.include_bias,
            "structured": self.structured,
            "regularization_loss": self.regularization_loss,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _measure(self):
        # On JAX, reading `self.model` syncs the running state into the
        # variables, so the counter reads the current weights.
        model = self.model
        if self._counter is None or self._counter.model is not model:
            self._counter = Counter(
                model, self.threshold, self.per_layer, self.include_bias,
                self.structured, self.regularization_loss,
            )
            self._counter.model = model
        return self._counter()

    def on_train_begin(self, logs=None):
        # Reuse the compiled pass across fits of the same, unchanged model.
        counter = self._counter
        if counter is not None and not (
            counter.model is self.model and counter.matches(self.model)
        ):
            self._counter = None

    def on_epoch_begin(self, epoch, logs=None):
        self._next = self._every

    def on_train_batch_end(self, batch, logs=None):
        if self._every is None or logs is None or batch + 1 < self._next:
            return
        logs.update(self._measure())
        self._next = (batch + 1) // self._every * self._every + self._every

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self._measure())
