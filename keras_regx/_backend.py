"""Every backend-specific code path of keras_regx, behind one small interface.

The rest of the package is written with `keras.ops` and calls these functions
where a backend needs its own code (a compiled pass, a fast variable write, a
question only the backend can answer) or where one backend's kernel is much
faster or behaves differently from the others. Nothing else in the package
asks which backend runs.

- `compiled(fn)`: a function compiled for the backend; `fused(fn)`: one
  XLA computation where the step around it is not one.
- `taking_gradients(x)`: whether a training step is taking gradients.
- `read_once(value)`: a scheduled variable as a compiled step should read it.
- `threads_state()`, `variable_writer`, `JaxStateWriter`: how the scheduler's
  values reach the compiled step.
- `penalty_kernels()`: the penalty and soft-threshold, where a backend has
  faster ones than Keras' expressions.
- `apply_weight_decay(...)`: Keras' decoupled weight decay rule with a
  scheduled value.
- `keras_dropout_draws_from_seed()`, `fast_stride_one_pooling()`: where the
  dropout layers must not, or need not, use a Keras kernel.
- `after_each_step(model, optimizer, fn, set_aside)`: pruning's mask
  updates after each step of `fit()`: on JAX on the step's state, through
  `on_state` (which a JAX loop of the user's reaches through
  `kr.pruning.stateless_update`); on PyTorch in place of Keras' constraints,
  with `multiply_in_place`.
"""

import keras
import numpy as np
from keras import ops

_BACKEND = keras.backend.backend()
_WRITER = "_keras_regx_writer"  # marks the functions a writer put on a model


def compiled(fn):
    """`fn` compiled for the backend: tf.function on TensorFlow, jax.jit on
    JAX; on PyTorch the eager ops run without autograd recording."""
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if _BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if _BACKEND == "torch":
        import torch

        def run(*args):
            with torch.no_grad():
                return fn(*args)

        return run
    return fn


def fused(fn):
    """`fn` as one XLA computation where the step around it may not be one:
    on TensorFlow a graph that is not compiled with XLA (Keras' default on
    the CPU) runs each op on its own, so the 32 counting passes of the
    pruning thresholds of 24 kernels took 18-26 ms, 9-12 ms fused
    (`benchmarks/RESULTS.md`, "Magnitude pruning"). `fn` itself on JAX (the
    step is compiled whole) and PyTorch (eager)."""
    if _BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def taking_gradients(x):
    """Whether gradients are being taken through `x` (a weight or its value).

    Tells a training step (`fit()`, `train_on_batch()`, a custom loop) from
    `evaluate()`, which computes the same penalties without gradients.
    """
    if _BACKEND == "tensorflow":
        try:  # whether a GradientTape records; TensorFlow has no public query
            from tensorflow.python.eager.record import could_possibly_record
        except ImportError:  # pragma: no cover - a TensorFlow without it
            return True
        return could_possibly_record()
    if _BACKEND == "torch":
        import torch

        return torch.is_grad_enabled()
    if _BACKEND == "jax":
        import jax
        from jax.interpreters import ad

        value = x.value if isinstance(x, keras.Variable) else x
        # `jax.grad` traces with the tracers of JAX's autodiff interpreter
        # (JVP, linearize); `jax.jit` alone with staging tracers.
        return (isinstance(value, jax.core.Tracer)
                and type(value).__module__ == ad.JVPTracer.__module__)
    return False  # backends without training (NumPy, OpenVINO)


def read_once(value):
    """`value`, a float or a scheduled variable, as a step should use it.

    TensorFlow emits a read op for every use of a variable inside a
    `tf.function` and does not merge reads of one variable, so 500
    regularizers on one schedule variable made 1000 reads (and casts) per
    step (its cost: `benchmarks/RESULTS.md`). Inside a function being traced a
    variable is read once per graph (and per replica of a `tf.distribute`
    strategy); elsewhere, and on JAX and PyTorch (whose reads cost nothing
    extra), the variable is returned as it is. Only the scheduler writes
    these variables, between steps, so one read per step is the value.
    """
    if not isinstance(value, keras.Variable) or _BACKEND != "tensorflow":
        return value
    import tensorflow as tf

    if not tf.inside_function():
        return value
    graph = tf.compat.v1.get_default_graph()
    # Kept on the graph, so that it goes with it (a map from graphs to their
    # tensors would keep every graph alive).
    reads = getattr(graph, "_keras_regx_reads", None)
    if reads is None:
        reads = {}
        try:
            graph._keras_regx_reads = reads
        except AttributeError:  # pragma: no cover - a graph that takes none
            return value
    key = (id(value), id(tf.distribute.get_replica_context()))
    if key not in reads:
        reads[key] = tf.convert_to_tensor(value.value)
    return reads[key]


def eager_steps():
    """Whether training steps run eagerly (PyTorch): a value the host knows
    is cheaper passed as a Python number than computed with tensor ops, and
    a tensor condition is read on the host anyway."""
    return _BACKEND == "torch"


def threads_state():
    """Whether the compiled step takes the model state as arguments (JAX): a
    running `fit()` holds the state as arrays between steps, so values
    written into the variables reach it only through `JaxStateWriter`."""
    return _BACKEND == "jax"


def variable_writer(variables, values):
    """`write(pairs)`: stores `(variable, float)` pairs into scheduled variables
    (float32 scalars only the scheduler writes), outside a JAX `fit()`.

    `variables` are all the variables it may write; `values()` returns the
    value each should hold, in that order (for a write of many at once).
    """
    if _BACKEND == "tensorflow":
        return _TensorFlowWriter(variables, values)
    if _BACKEND == "torch":
        return _torch_write
    return _assign_each


def _assign_each(pairs):
    for variable, value in pairs:
        variable.assign(value)


def _torch_write(pairs):
    """PyTorch: fills the variables' tensors in place.

    `Variable.assign` checks and converts its argument (tens of
    microseconds); a scheduled variable is a float32 scalar that only the
    scheduler writes, so an in-place fill of its tensor is the same write.
    """
    import torch

    with torch.no_grad():
        for variable, value in pairs:
            variable.value.fill_(value)


def multiply_in_place(variables, factors):
    """PyTorch: multiplies each of `variables` by its factor (a variable of
    its shape) in place, all in one fused op outside autograd. Applying a
    pruning mask as a constraint's value (a product, then Keras' checked
    `assign`) cost 0.95 ms a step for the 25 kernels of the benchmark MLP,
    4% of its step; in place, with Keras assigning each weight to itself,
    about half (`benchmarks/RESULTS.md`, "Magnitude pruning")."""
    import torch

    with torch.no_grad():
        torch._foreach_mul_([v.value for v in variables], [f.value for f in factors])


class _TensorFlowWriter:
    """TensorFlow: the writes of a step, by op or in one compiled call.

    Keras' eager `Variable.assign` costs several times TensorFlow's assign
    op alone, and a call of a `tf.function` costs as much as a few tens of
    assign ops whatever it does (figures: `benchmarks/RESULTS.md`, "Measurements
    behind the code"). So a step that changes a
    few variables assigns each with the op (plain float32 resource
    variables; others, such as a `tf.distribute` strategy's, whose replicas
    must all change, through `Variable.assign`); one that changes more calls
    one compiled function that assigns every variable of the writer its
    current value.
    """

    _FEW = 16

    def __init__(self, variables, values):
        import tensorflow as tf
        from tensorflow.python.ops.resource_variable_ops import ResourceVariable

        self._variables = variables
        self._values = values
        self._function = None
        self._assign_op = tf.raw_ops.AssignVariableOp
        self._plain = {
            id(v) for v in variables
            if type(v.value) is ResourceVariable and v.value.dtype == tf.float32
        }

    def __call__(self, pairs):
        if len(pairs) <= self._FEW:
            for variable, value in pairs:
                if id(variable) in self._plain:
                    self._assign_op(resource=variable.value.handle, value=value)
                else:
                    variable.assign(value)
            return
        if self._function is None:
            import tensorflow as tf

            variables = self._variables

            @tf.function(autograph=False)
            def assign(values):
                for i, variable in enumerate(variables):
                    variable.assign(values[i])

            self._function = assign
        self._function(np.array(self._values(), np.float32))


class JaxStateWriter:
    """Writes new variable values into the state of JAX's running `fit()`.

    JAX's `fit()` holds the model state as arrays between steps and re-reads
    the variables only at epoch starts or after a full state sync (which
    costs a large part of a small model's step). Instead, this wraps `model.train_function`
    and swaps the new values into the non-trainable part of the state that
    the next step receives.

    A `fit()` may end without `on_train_end` (an exception, a
    KeyboardInterrupt), so nothing may depend on `close()`:

    - `model.jax_state_sync` is wrapped too: every sync, the one that ends any
      `fit()` included, also writes the values still pending into the
      variables, so they hold what TensorFlow's and PyTorch's would;
    - a wrapper that finds itself in another `fit()` (`model.history` is that
      fit's `History`) removes itself and passes the call through;
    - the scheduler's `on_train_begin` closes any writer left on the model.
    """

    def __init__(self, model, variables):
        index = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        missing = [v.path for v in variables if id(v) not in index]
        if missing:
            raise ValueError(
                "Scheduled variables "
                f"{missing} are not part of the model's state, so on the JAX "
                "backend the compiled train step would never see them change. "
                "This happens when a keras_regx regularizer is passed to "
                "`add_weight(regularizer=...)` without being stored on the "
                "layer: assign it to an attribute of the layer "
                "(e.g. `self.kernel_regularizer = reg`) before building it."
            )
        self._model = model
        self._fit = getattr(model, "history", None)  # a new `History` each fit()
        self._index = index
        self._variables = {index[id(v)]: v for v in variables}
        self._pending = {}
        self._original = model.train_function
        self._original_sync = model.jax_state_sync
        # Usually the class's method; anything on the instance goes back there.
        self._own_sync = vars(model).get("jax_state_sync")

        def train_function(state, data):
            if getattr(model, "history", None) is not self._fit:  # a fit() that crashed
                self.close()
                return self._original(state, data)
            pending = self._pending
            if pending:
                trainable, non_trainable, optimizer, metrics = state
                non_trainable = list(non_trainable)
                for i, value in pending.items():
                    non_trainable[i] = value
                state = (trainable, non_trainable, optimizer, metrics)
            logs_and_state = self._original(state, data)
            if pending:  # the step ran: its values are in the state now
                self._pending = {}
            return logs_and_state

        def jax_state_sync():
            self._original_sync()
            if getattr(model, "history", None) is not self._fit:
                self.close()
            self._flush()

        train_function.__dict__[_WRITER] = self
        jax_state_sync.__dict__[_WRITER] = self
        self._train_function = train_function
        self._sync = jax_state_sync
        model.train_function = train_function
        model.jax_state_sync = jax_state_sync

    def __call__(self, pairs):
        # NumPy scalars, not device arrays: jit transfers them with the
        # step's other arguments, more cheaply than making a device array
        # here (figures: benchmarks/RESULTS.md); and a device
        # array shared by several entries of the state would be donated
        # twice. The variables themselves get the values when Keras next
        # syncs the state into the variables (epoch end, or a callback
        # reading the model), like every other variable of the model during
        # a JAX `fit()`.
        for variable, value in pairs:
            self._pending[self._index[id(variable)]] = np.asarray(value, np.float32)

    def _flush(self):
        """Writes the pending values into the variables (after a state sync)."""
        pending, self._pending = self._pending, {}
        for i, value in pending.items():
            self._variables[i].assign(value)

    def close(self):
        """Takes the wrappers off the model, where they are still on top."""
        model = vars(self._model)
        if model.get("train_function") is self._train_function:
            self._model.train_function = self._original
        if model.get("jax_state_sync") is self._sync:
            if self._own_sync is None:
                del self._model.jax_state_sync  # the class's method again
            else:
                self._model.jax_state_sync = self._own_sync

    @staticmethod
    def close_all(model):
        """Closes the writers that fits which never ended left on `model`."""
        for name in ("jax_state_sync", "train_function"):
            writer = getattr(vars(model).get(name), _WRITER, None)
            while writer is not None:
                writer._flush()
                writer.close()
                writer = getattr(vars(model).get(name), _WRITER, None)


def penalty_kernels():
    """`(elastic_net(x, l1, l2, gradient), soft_threshold(w, threshold))` where
    the backend has faster ones than Keras' expressions, else None.

    PyTorch runs eagerly and records one autograd node per operation, so
    there the penalty is a single `torch.autograd.Function` with as few
    passes over the weight as we found: forward `sign(x)`, `dot(sign(x), x)`
    (= sum(abs(x))) and `dot(x, x)` (= sum(square(x)); the values agree with
    Keras' to float32 rounding, the summation order differs); backward
    `upstream * (l1 * sign(x) + 2 * l2 * x)` in two passes over the kept
    signs (`benchmarks/bench_regularizers.py` measures it against Keras' `L1L2`).
    """
    if _BACKEND == "torch":
        return _make_torch_penalty(), _torch_soft_threshold
    return None


def _torch_soft_threshold(w, threshold):
    # `w - clip(w, -t, t)` in three passes with torch's own kernels (keras.ops'
    # conversions around them cost more than the passes): faster than the
    # sign * relu form (figures: benchmarks/RESULTS.md).
    import torch

    w = ops.convert_to_tensor(w)
    return w - torch.minimum(torch.maximum(w, -threshold), threshold)


def _make_torch_penalty():
    import torch

    def _l2_sum(x):
        # One BLAS reduction instead of square + sum (same value to float32
        # rounding: the summation order differs).
        flat = x.reshape(-1)
        return torch.dot(flat, flat)

    class ElasticNetPenalty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, l1, l2):
            if l1 is None:
                l1_term, signs = None, None
            else:
                # sum(abs(x)) as dot(sign(x), x): the signs are the L1 term's
                # gradient, kept for the backward.
                signs = torch.sign(x)
                l1_term = torch.dot(signs.reshape(-1), x.reshape(-1)).mul_(l1)
            if ctx is not None:
                ctx.save_for_backward(x)
                ctx.l1, ctx.l2, ctx.signs = l1, l2, signs
            if l2 is None:
                return l1_term
            if l1 is None:
                return _l2_sum(x).mul_(l2)
            if isinstance(l2, float):
                return l1_term.add_(_l2_sum(x), alpha=l2)
            return torch.addcmul(l1_term, _l2_sum(x), l2)

        @staticmethod
        def backward(ctx, upstream):
            # `upstream * (l1 * sign(x) + 2 * l2 * x)` in two elementwise
            # passes over the signs kept by the forward (taken, not copied: a
            # second backward of a retained graph recomputes them); the
            # strengths meet `upstream` in scalar operations.
            (x,) = ctx.saved_tensors
            l1, l2 = ctx.l1, ctx.l2
            if l1 is None:
                return x * (upstream * (2 * l2)), None, None
            grad = ctx.signs if ctx.signs is not None else torch.sign(x)
            ctx.signs = None
            grad.mul_(l1 * upstream)
            if l2 is not None:
                grad.addcmul_(x, upstream * (2 * l2))
            return grad, None, None

    def penalty(x, l1, l2, gradient):
        x = x.value if isinstance(x, keras.Variable) else ops.convert_to_tensor(x)
        l1 = _torch_strength(l1, x)
        l2 = _torch_strength(l2, x)
        if not (gradient and x.requires_grad and torch.is_grad_enabled()):
            # No gradient to record (a proximal penalty's value, evaluation):
            # the forward alone, on a tensor autograd does not follow.
            return ElasticNetPenalty.forward(None, x.detach(), l1, l2)
        return ElasticNetPenalty.apply(x, l1, l2)

    def _torch_strength(strength, x):
        if isinstance(strength, keras.Variable):
            return strength.value.to(x.dtype)
        if strength is None or isinstance(strength, float):
            return strength
        return float(strength)

    return penalty


def apply_weight_decay(optimizer, variables, value):
    """Keras' decoupled weight decay of `optimizer` on `variables`, with the
    strength `value(dtype)` (a float or a scalar tensor) in place of the float
    Keras reads from `optimizer.weight_decay`: `w -= lr * wd * w` for each
    variable `optimizer` decays.

    TensorFlow applies it per replica under a `tf.distribute` strategy (Keras'
    TensorFlow optimizers' own rule); the other backends run Keras' rule of
    the optimizer's class with the value set for the call.
    """
    if _BACKEND == "tensorflow":
        return _tensorflow_weight_decay(optimizer, variables, value)
    own = optimizer.weight_decay
    try:
        optimizer.weight_decay = value("float32")
        type(optimizer)._apply_weight_decay(optimizer, variables)
    finally:
        optimizer.weight_decay = own


def _tensorflow_weight_decay(optimizer, variables, value):
    import tensorflow as tf

    def distributed(distribution, variables, **kwargs):
        def decay(variable):
            if optimizer._use_weight_decay(variable):
                lr = tf.cast(optimizer.learning_rate, variable.dtype)
                wd = tf.cast(value(variable.dtype), variable.dtype)
                variable.assign_sub(variable * wd * lr)

        for variable in variables:
            if isinstance(variable, keras.Variable):
                variable = variable.value
            distribution.extended.update(variable, decay, group=False)

    tf.__internal__.distribute.interim.maybe_merge_call(
        distributed, optimizer._distribution_strategy, variables
    )


def keras_dropout_draws_from_seed():
    """Whether `keras.random.dropout` draws from the seed generator it is given.

    Keras' PyTorch dropout ignores a `SeedGenerator` made with `seed=None`
    when no `noise_shape` is given: it draws from torch's global generator,
    so a model loaded from a file would not draw the masks the saved one
    would have. There the dropout layers draw their own masks.
    """
    return _BACKEND != "torch"


def fast_stride_one_pooling():
    """Whether `keras.ops.max_pool` with stride 1 is the fastest window maximum.

    PyTorch's CPU max pooling with stride 1 measured several times slower
    than a log-depth maximum of shifted slices there; TensorFlow's and JAX's
    pooling were as fast or faster than the slices (figures:
    benchmarks/RESULTS.md).
    """
    return _BACKEND != "torch"


_AFTER_STEP = "_keras_regx_after_step"  # the function a wrapped train step runs
_IN_WRAPPED_STEP = []  # JAX: non-empty while a step wrapped by `after_each_step` is traced


def in_wrapped_step():
    """JAX: whether the code runs inside a train step wrapped by
    `after_each_step` (while `fit()`'s step is traced; not in a custom
    training loop)."""
    return bool(_IN_WRAPPED_STEP)


def on_state(model, state, fn):
    """Runs `fn()` on `state`, `(trainable, non_trainable, optimizer_values)`
    (values of `model`'s trainable and non-trainable variables and of
    `model.optimizer`'s variables, in their orders), inside a stateless scope:
    what `fn` assigns becomes the new state. Returns the new `(trainable,
    non_trainable)` values."""
    trainable, non_trainable, optimizer_values = state
    mapping = (list(zip(model.trainable_variables, trainable))
               + list(zip(model.non_trainable_variables, non_trainable))
               + list(zip(model.optimizer.variables, optimizer_values)))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        fn()
    return ([scope.get_current_value(v) for v in model.trainable_variables],
            [scope.get_current_value(v) for v in model.non_trainable_variables])


def after_each_step(model, optimizer, fn, set_aside=None):
    """Runs `fn(optimizer.iterations)` after each training step of `fit()`.

    JAX: on the state the step returns, inside a stateless scope that maps
    the model's trainable and non-trainable variables and `model.optimizer`'s
    variables to that state; what it assigns becomes the next step's state.

    PyTorch: on the variables, after the step. `set_aside()`, called before
    each step, returns the variables whose constraint the optimizer must not
    apply in it, because `fn` applies it for all of them at once: Keras'
    checked `assign` of each constrained weight, even to itself, cost about
    as much as pruning's whole fused multiply (`benchmarks/RESULTS.md`,
    "Magnitude pruning"). Their constraints are back on them when the step ends, or
    fails, so a loop of the user's applies them as usual.

    Wraps `model.train_step` once (the caller makes the train function anew);
    a later call only replaces `fn` and `set_aside`. Returns whether it
    wrapped the step now.
    """
    holder = model.__dict__.get(_AFTER_STEP)
    if holder is not None:
        holder[0] = (optimizer, fn, set_aside)
        return False
    holder = [(optimizer, fn, set_aside)]
    original = model.train_step

    if _BACKEND == "jax":
        def train_step(state, data):
            _IN_WRAPPED_STEP.append(True)
            try:
                logs, state = original(state, data)
            finally:
                _IN_WRAPPED_STEP.pop()
            trainable, non_trainable, optimizer_values, metrics = state
            step_optimizer, step_fn, _ = holder[0]
            trainable, non_trainable = on_state(
                model, (trainable, non_trainable, optimizer_values),
                lambda: step_fn(step_optimizer.iterations))
            return logs, (trainable, non_trainable, optimizer_values, metrics)
    else:
        def train_step(data):
            step_optimizer, step_fn, step_set_aside = holder[0]
            variables = step_set_aside() if step_set_aside is not None else ()
            constraints = [v.constraint for v in variables]
            for v in variables:
                v.constraint = None
            try:
                logs = original(data)
            finally:
                for v, constraint in zip(variables, constraints):
                    v.constraint = constraint
            step_fn(step_optimizer.iterations)
            return logs

    # Past Keras' attribute tracking: neither is model state.
    object.__setattr__(model, _AFTER_STEP, holder)
    object.__setattr__(model, "train_step", train_step)
    return True
