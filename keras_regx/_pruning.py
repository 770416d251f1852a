"""Magnitude pruning during training: masks that follow a sparsity schedule.

A `PruningConstraint` (the public `keras_regx.pruning.Prune`) is at once the
Keras constraint of one kernel and a Keras layer holding that kernel's mask,
so the layer it is given to (`kernel_constraint=`) tracks the mask as model
state: it is saved with the model and, on JAX, part of the state the
compiled step passes along. `attach(model)`, called by the driver callback
when training starts, creates the masks, groups the constraints that share
one magnitude threshold (`scope="global"`), and installs the update.

After every optimizer update, inside the compiled step, the constraints on
one schedule (a cluster of groups, each group one threshold):

- on steps where their schedule says so (`should_update(step)`, TF Model
  Optimization's `begin_step` / `end_step` / `frequency`), recompute the
  masks of their kernels from their magnitudes at the sparsity `schedule(step)`
  (an in-graph branch: nothing goes to the host). `step` counts the updates
  applied, this one included (1 after the first batch), as TF Model
  Optimization's `pruning_step` counts the batches it has begun;
- multiply their kernels by their masks, so pruned weights are exactly zero
  after every step.

Where: on TensorFlow and PyTorch, in the constraint Keras applies right after
the update (the first constraint of a cluster updates all its masks; on
PyTorch the driver passes the step's decision from the host, and `fit()`'s
steps set constraints that are only masks aside and apply the masks after
the step, `keras_regx._backend.after_each_step`). On JAX the
optimizer's stateless update sees only optimizer and trainable state, not
the masks (model state), so the model's train step is wrapped to run the
same code on the step's state after it (`keras_regx._backend.after_each_step`);
the constraint itself only applies the constraint it wraps. A JAX loop of the
user's calls `stateless_update` on its state instead (the driver warns after
a batch whose step did not).
"""

import warnings
import weakref

import keras
from keras import ops

from keras_regx import _masks
from keras_regx._backend import after_each_step
from keras_regx._backend import eager_steps
from keras_regx._backend import in_wrapped_step
from keras_regx._backend import multiply_in_place
from keras_regx._backend import on_state
from keras_regx._backend import threads_state
from keras_regx._engine import schedule_key
from keras_regx._model_walk import Attachment
from keras_regx._model_walk import updating_optimizer


class PruningConstraint(Attachment, keras.constraints.Constraint, keras.layers.Layer):
    """Base of `keras_regx.pruning.Prune`: the mask and its update.

    Subclasses set, before `_init_pruning()`: `schedule` (a pruning schedule
    with `__call__(step)`, `should_update(step)`), `granularity`
    (`"weight"`, `"unit"`, `("block", (r, c))` or `("n:m", (n, m))`), `scope`
    (`"layer"` or `"global"`) and `constraint` (the constraint it wraps, or
    None); and implement `check_weight(variable)`.
    """

    def _init_pruning(self):
        self.mask = None
        self._group = None  # set by `attach`
        self._warned = False
        self.built = True  # state (the mask) is added by `build_mask`

    def build_mask(self, variable):
        """Creates the mask of `variable` (all ones) unless it exists; True if created."""
        if self.mask is not None:
            if tuple(self.mask.shape) != tuple(variable.shape):
                raise ValueError(
                    f"`{type(self).__name__}` '{self.name}' holds a mask of shape "
                    f"{tuple(self.mask.shape)}, but is the constraint of weight "
                    f"'{variable.path}' of shape {tuple(variable.shape)}: a "
                    "pruning constraint prunes one weight; give each weight its own."
                )
            return False
        self._add_mask(tuple(variable.shape), variable.dtype)
        return True

    def _add_mask(self, shape, dtype):
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            self.mask = self.add_weight(
                shape=shape, dtype=dtype, initializer="ones", trainable=False,
                autocast=False, name="mask",
            )
        finally:
            if locked:
                self._tracker.lock()

    def load_own_variables(self, store):
        # A file saved after training holds the mask; a new object has none yet.
        if not store or not len(store.keys()):
            return
        if self.mask is None:
            value = store["0"]
            self._add_mask(tuple(value.shape), str(value.dtype))
        super().load_own_variables(store)

    def __call__(self, w):
        group = self._group
        if group is None:
            self._warn_undriven()
        elif group.in_constraint:
            w = group.apply(self, w)
        elif not in_wrapped_step():
            group.custom_loop = True  # the driver warns unless `stateless_update` follows
        if self.constraint is not None:
            w = self.constraint(w)
        return w

    def _warn_undriven(self):
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"`{type(self).__name__}` '{self.name}' prunes a weight that is "
            "being trained, but no `keras_regx.callbacks.RegularizationDriver` "
            "installed its mask updates, so nothing is pruned. Pass "
            "`callbacks=[keras_regx.callbacks.RegularizationDriver()]` to `fit()`.",
            stacklevel=2,
        )

    def warn_custom_loop(self):
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"`{type(self).__name__}` '{self.name}' prunes a weight trained by a "
            "JAX training loop other than `fit()` that does not update the masks "
            "(the optimizer's update does not see them: they are model state), "
            "so nothing is pruned. After `optimizer.stateless_apply(...)`, pass "
            "the state through `kr.pruning.stateless_update(model, "
            "trainable_values, non_trainable_values, optimizer_values)`.",
            stacklevel=2,
        )

    def compute_output_spec(self, x):  # never called as a layer
        return x


class _Group:
    """Constraints that share one threshold: one for `scope="layer"`, every
    global one with the same schedule and granularity for `scope="global"`."""

    def __init__(self, members):
        self.members = members  # [(constraint, variable)], in update order
        self.granularity = members[0][0].granularity


class _Cluster:
    """The groups that follow one schedule: one decision per step whether
    to update their masks, and one in-graph branch for all of them (a branch
    per kernel cost XLA on the CPU about 13% of a 24-layer MLP's step)."""

    def __init__(self, groups, optimizer):
        self.groups = groups
        self.members = [m for g in groups for m in g.members]  # in update order
        self.variables = {id(c): v for c, v in self.members}
        self.first = self.members[0][0]
        self.schedule = self.first.schedule
        self.optimizer = optimizer
        self.in_constraint = not threads_state()
        # PyTorch's `fit()` may apply the masks after its step in place of the
        # constraints where they are the weights' whole constraint.
        self.plain = all(v.constraint is c and c.constraint is None for c, v in self.members)
        # Eager steps (PyTorch), driven: (whether the coming step updates the
        # masks, its sparsity), set by the driver from the host's step count.
        self.host = None
        # JAX: whether a step the user traced ran the optimizer's update
        # (constraints) outside `fit()`, and whether one updated the masks.
        self.custom_loop = self.masks_updated = False

    def set_host_step(self, step):
        if step is None:
            self.host = None
            return
        due = self.schedule.updates_at(step)
        sparsity = min(max(self.schedule.value_at(step), 0.0), 1.0) if due else None
        self.host = (due, sparsity)

    def _masks(self, values, sparsity):
        groups, i = [], 0
        for group in self.groups:
            n = len(group.members)
            groups.append((values[i:i + n], group.granularity))
            i += n
        return _masks.masks(groups, sparsity)

    def values(self):
        """The current values of the cluster's weights, in update order."""
        return [v.value for _, v in self.members]

    def _assign(self, masks):
        for (c, _), mask in zip(self.members, masks):
            c.mask.assign(mask)

    def _sparsity(self, step):
        return ops.clip(ops.cast(self.schedule(step), "float32"), 0.0, 1.0)

    def update(self, step, values, in_place):
        """Recomputes the masks where `step` is an update step; `values()`
        gives the weights' values (read only then)."""
        due = self.schedule.should_update(step)
        if in_place:
            # TensorFlow: the branch assigns the masks, so steps without an
            # update copy none.
            def recompute():
                self._assign(self._masks(values(), self._sparsity(step)))
                return ops.convert_to_tensor(True)

            ops.cond(due, recompute, lambda: ops.convert_to_tensor(False))
            return
        # JAX: branches are functions of the state; the masks are their value.
        current = [c.mask.value for c, _ in self.members]
        self._assign(ops.cond(due, lambda: self._masks(values(), self._sparsity(step)),
                              lambda: current))

    def apply(self, constraint, w):
        """TensorFlow, PyTorch: the constraint of `constraint`'s weight, `w`
        its value after the update (the first updates all masks: every weight
        is updated before Keras applies the constraints)."""
        def values():  # the first constraint's weight is `w`, the rest updated already
            return [w] + [v.value for _, v in self.members[1:]]

        if self.host is not None:  # eager (PyTorch): the host knows the step
            if constraint is self.first:
                # Keras then assigns each constraint's value, a weight to itself.
                self.host_update(values, self.host)
            if w is self.variables[id(constraint)]:
                return w
        elif constraint is self.first:
            # Keras applies constraints before its counter moves: this
            # update is the counter's value plus one.
            self.update(self.optimizer.iterations + 1, values, in_place=True)
        return w * ops.cast(constraint.mask.value, w.dtype)

    def host_update(self, values, host):
        """PyTorch: the masks updated where `host` (`self.host` as the driver
        set it) says so, then every kernel multiplied by its mask at once, in
        place."""
        due, sparsity = host
        if due:
            self._assign(self._masks(values(), sparsity))
        multiply_in_place([v for _, v in self.members], [c.mask for c, _ in self.members])

    def after_step(self, step):
        """JAX: the same on the step's state (inside a stateless scope)."""
        self.masks_updated = True
        self.update(step, self.values, in_place=False)
        for c, v in self.members:
            v.assign(v.value * ops.cast(c.mask.value, v.dtype))


# model -> its pruning clusters, as `attach` made them last.
_GROUPS = weakref.WeakKeyDictionary()


def host_stepper(model):
    """On eager backends (PyTorch), for a model with pruned weights: a
    function the driver calls with each step (updates counted from 1) before
    the step runs, so the step reads whether to update the masks, and at
    which sparsity, as Python values; and with None when training ends, so
    later steps without the driver count from the optimizer's counter again.
    None elsewhere."""
    clusters = _GROUPS.get(model)
    if not clusters or not eager_steps():
        return None

    def set_step(step):
        for cluster in clusters:
            cluster.set_host_step(step)

    return set_step


def custom_loop_check(model):
    """On JAX, for a model with pruned weights: a function the driver calls
    after each batch, which warns (once per schedule, naming its first
    weight's constraint) when a training loop of the user's ran the
    optimizer's update on the pruned weights but never updated the masks
    (`stateless_update`). None elsewhere."""
    clusters = _GROUPS.get(model)
    if not clusters or not threads_state():
        return None

    def check():
        for cluster in clusters:
            if cluster.custom_loop and not cluster.masks_updated:
                cluster.first.warn_custom_loop()

    return check


def stateless_update(model, trainable, non_trainable, optimizer_values):
    """`kr.pruning.stateless_update` (see there)."""
    clusters = _GROUPS.get(model)
    if not clusters:
        found = _pruned(model)
        if found:
            raise ValueError(
                f"`{type(found[0][0]).__name__}` on weight '{found[0][1].path}': no "
                "`keras_regx.callbacks.RegularizationDriver` has installed the mask "
                "updates of this model (it creates the masks when training begins). "
                "Call `callbacks.on_train_begin()`, the driver among the callbacks, "
                "before collecting the state values."
            )
        return list(trainable), list(non_trainable)
    for name, owner, variables, values in (
            ("trainable_values", "model.trainable_variables", model.trainable_variables, trainable),
            ("non_trainable_values", "model.non_trainable_variables",
             model.non_trainable_variables, non_trainable),
            ("optimizer_values", "model.optimizer.variables", model.optimizer.variables,
             optimizer_values)):
        if len(values) != len(variables):
            hint = ("; the masks are non-trainable variables, created when training "
                    "begins" if name == "non_trainable_values" else "")
            raise ValueError(
                f"Invalid value for argument `{name}`: expected one value per variable "
                f"of `{owner}` ({len(variables)}{hint}). Received: {len(values)} values"
            )
    optimizer = updating_optimizer(model.optimizer)
    return on_state(model, (trainable, non_trainable, optimizer_values),
                    lambda: _after_step(clusters, optimizer.iterations))


def _after_step(clusters, iterations):
    """JAX: every cluster's update on a step's state; `iterations` has moved
    past this update."""
    for cluster in clusters:
        cluster.after_step(iterations)


def pruning_constraint(variable):
    """The pruning constraint of `variable` (possibly wrapped, as by a
    proximal step), or None."""
    constraint = getattr(variable, "constraint", None)
    while constraint is not None:
        if isinstance(constraint, PruningConstraint):
            return constraint
        constraint = getattr(constraint, "constraint", None)
    return None


def _pruned(model):
    """`(constraint, variable)` for each weight with a pruning constraint, in
    the model's order."""
    found = [(pruning_constraint(v), v) for v in model.trainable_variables]
    return [(c, v) for c, v in found if c is not None]


def _schedule_key(schedule):
    """Equal keys: equal sparsity and update steps at every step."""
    inner = getattr(schedule, "schedule", None)  # any other schedule, wrapped
    if inner is not None:
        return ("every 100 steps", schedule_key(inner))
    return schedule_key(schedule)


def _group_key(constraint, schedule_key):
    if constraint.scope != "global":
        return id(constraint)
    return ("global", schedule_key, repr(constraint.granularity))


def attach(model):
    """Creates the masks of `model`'s pruned weights and installs their
    updates; True if the model's state changed (steps traced before must be
    made anew). Raises a ValueError, naming the weight, for a constraint that
    cannot prune its weight or a model without an optimizer."""
    found = _pruned(model)
    if not found:
        return False
    if getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"`{type(found[0][0]).__name__}` on weight '{found[0][1].path}' "
            "updates its mask after each optimizer update, but the model has "
            "no optimizer. Compile the model with the optimizer that trains it."
        )
    seen, changed = {}, False
    for constraint, variable in found:
        if id(constraint) in seen:
            raise ValueError(
                f"One `{type(constraint).__name__}` object ('{constraint.name}') "
                f"is the constraint of weights '{seen[id(constraint)]}' and "
                f"'{variable.path}': a pruning constraint holds the mask of one "
                "weight; give each weight its own (as `kr.pruning.prune` does)."
            )
        seen[id(constraint)] = variable.path
        constraint.check_weight(variable)
        changed = constraint.build_mask(variable) or changed
    optimizer = updating_optimizer(model.optimizer)
    keys = {id(c): _schedule_key(c.schedule) for c, _ in found}  # each config serialized once
    groups = {}
    for constraint, variable in found:
        key = _group_key(constraint, keys[id(constraint)])
        groups.setdefault(key, []).append((constraint, variable))
    clusters = {}
    for members in groups.values():
        clusters.setdefault(keys[id(members[0][0])], []).append(_Group(members))
    clusters = [_Cluster(grouped, optimizer) for grouped in clusters.values()]
    for cluster in clusters:
        for constraint, _ in cluster.members:
            constraint._group = cluster
    _GROUPS[model] = clusters
    if threads_state():
        changed = after_each_step(
            model, optimizer, lambda iterations: _after_step(clusters, iterations)) or changed
    elif eager_steps():
        changed = after_each_step(model, optimizer, *_eager_step(clusters)) or changed
    return changed


def _eager_step(clusters):
    """PyTorch, `fit()`: `(after, set_aside)` for `after_each_step`. Before a
    step the driver began (it set the host's step), the kernels of clusters
    whose constraints are only their masks are set aside; after it, their
    masks are updated and applied. Each step uses the driver's word up, so
    a step nothing began (`train_on_batch`, after a failed step too) runs the
    constraints."""
    due = []

    def set_aside():
        due[:] = [(c, c.host) for c in clusters if c.plain and c.host is not None]
        for cluster, _ in due:
            cluster.host = None
        return [v for cluster, _ in due for _, v in cluster.members]

    def after(iterations):
        for cluster, host in due:
            cluster.host_update(cluster.values, host)

    return after, set_aside
