"""The only backend-specific code: train/test step plumbing and collectives.

`ThreeTowerModel.compute_objective(batch, training)` holds all the math and
returns a dict of scalars whose `"loss"` entry is minimised; the functions
here differentiate it and apply the optimizer the way each backend requires,
and give the losses the data-parallel group they run in (`replicas()`).
"""

import contextlib
import functools
import weakref

import keras


def _unpack_batch(data):
    batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return batch


def _replica_share(loss, count):
    # Each replica's loss values estimate the global loss (they average to
    # it) and the replicas' gradients are summed, so each minimises 1/count
    # of its value: the summed gradient is the global loss's gradient.
    return loss if count == 1 else loss / count


# --- Gradients of the objective, with or without accumulation --------------
# Each backend supplies `value_and_gradients(objective, variables)`: calls
# `objective()` (a dict of values whose "loss" is minimised) and returns the
# values and the gradients of this replica's share of the loss. The rest is
# written once.


def _values_and_gradients(model, batch, value_and_gradients, variables):
    """The objective's values and gradients on `variables`.

    `variables` is `model.trainable_variables`, read once by the caller:
    Keras collects it by walking every layer at each read, which on eager
    PyTorch is paid at every step.
    """
    if model.accumulation_steps == 1:
        return value_and_gradients(
            lambda: model.compute_objective(batch, training=True), variables
        )
    return _accumulated_values_and_gradients(
        model, batch, value_and_gradients, variables
    )


def _accumulated_values_and_gradients(model, batch, value_and_gradients, variables):
    # open_clip's feature-cache accumulation. Pass 1 embeds every
    # micro-batch without gradient and differentiates the whole batch's loss
    # with respect to the logit scales (and biases) only; pass 2 re-embeds one
    # micro-batch at a time with gradient, puts its rows into the cached
    # embeddings and differentiates the whole loss with respect to the
    # towers' weights. Every negative is the big batch's, the summed
    # gradients are the big batch's, and activations are kept for one
    # micro-batch at a time.
    group = replicas()
    model.check_batch(batch, group)
    steps = model.accumulation_steps
    check_micro_batches(batch["images"], steps)
    size = keras.ops.shape(batch["images"])[0] // steps
    # The frozen third tower runs once per micro-batch, not once per pass.
    micro_batches = [
        model.with_third_features(
            {key: value[i * size : (i + 1) * size] for key, value in batch.items()}
        )
        for i in range(steps)
    ]
    cached = [
        keras.tree.map_structure(
            keras.ops.stop_gradient, model.embed_batch(micro, training=True)
        )
        for micro in micro_batches
    ]

    def objective(parts):
        embeddings = keras.tree.map_structure(
            lambda *rows: keras.ops.concatenate(rows, axis=0), *parts
        )
        return model.objective_from_embeddings(embeddings, group)

    scales = model.logit_variables
    scale_ids = {id(variable) for variable in scales}
    towers = [v for v in variables if id(v) not in scale_ids]
    values, scale_gradients = value_and_gradients(lambda: objective(cached), scales)
    tower_gradients = None
    for i, micro in enumerate(micro_batches):

        def live_objective(i=i, micro=micro):
            parts = list(cached)
            parts[i] = model.embed_batch(micro, training=True)
            return objective(parts)

        _, gradients = value_and_gradients(live_objective, towers)
        if tower_gradients is None:
            tower_gradients = list(gradients)
        else:
            tower_gradients = [a + b for a, b in zip(tower_gradients, gradients)]
    by_variable = {
        id(v): g for v, g in zip(scales + towers, list(scale_gradients) + tower_gradients)
    }
    return values, [by_variable[id(v)] for v in variables]


ACCUMULATION_INDIVISIBLE = (
    "The batch does not divide into accumulation_steps micro-batches of "
    "equal size: use a batch size (per replica) that is a multiple of "
    "accumulation_steps."
)


def check_micro_batches(images, steps):
    """Raises if a batch does not split into `steps` equal micro-batches."""
    size = images.shape[0]
    if size is not None:
        if size % steps:
            raise ValueError(
                f"{ACCUMULATION_INDIVISIBLE} Got a batch of {size} and "
                f"accumulation_steps={steps}."
            )
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_equal(
            tf.shape(images)[0] % steps, 0, message=ACCUMULATION_INDIVISIBLE
        )


# --- TensorFlow: GradientTape ---------------------------------------------


def _tensorflow_value_and_gradients(model, count):
    """The `value_and_gradients` of a TensorFlow step on `count` replicas.

    Each call chains after the previous call's gradients (accumulation's
    micro-batch passes); gradients are dense where accumulation sums them,
    and zeros for variables the objective does not reach.
    """
    import tensorflow as tf

    previous_gradients = []

    def value_and_gradients(objective, variables):
        # Accumulation's passes run one after another: TensorFlow's executor
        # would otherwise run the independent micro-batch passes at once and
        # hold every micro-batch's activations.
        with tf.control_dependencies(previous_gradients), tf.GradientTape() as tape:
            values = objective()
            scaled_loss = model.optimizer.scale_loss(
                _replica_share(values["loss"], count)
            )
        gradients = tape.gradient(scaled_loss, variables)
        if model.accumulation_steps > 1:
            # Sums of embedding gradients (IndexedSlices) need dense tensors.
            gradients = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
        gradients = [
            tf.zeros_like(v) if g is None else g for g, v in zip(gradients, variables)
        ]
        previous_gradients[:] = gradients
        return values, gradients

    return value_and_gradients


def _tensorflow_train_step(model, data):
    import tensorflow as tf

    values, gradients = _values_and_gradients(
        model,
        _unpack_batch(data),
        _tensorflow_value_and_gradients(model, replicas().count),
        model.trainable_variables,
    )
    if model.accumulation_steps > 1:
        # No variable changes before every gradient is computed. The
        # micro-batch passes read the logit scales, whose own gradients come
        # from the first pass only: without this, the scales' update raced
        # those reads (with the passes chained, 5 of 10 runs failed
        # tests/test_performance.py's accumulation test; rarely without).
        # Identities, not a context around `apply`,
        # which XLA refuses (the optimizer may create variables there).
        with tf.control_dependencies(gradients):
            gradients = [tf.identity(g) for g in gradients]
    # Under tf.distribute the optimizer sums the replicas' gradients.
    model.optimizer.apply(gradients, model.trainable_variables)
    return _tensorflow_logs(model.update_objective_metrics(values))


def _tensorflow_test_step(model, data):
    values = model.compute_objective(_unpack_batch(data), training=False)
    return _tensorflow_logs(model.update_objective_metrics(values))


def _tensorflow_logs(logs):
    # Keras reduces multi-worker logs with strategy.reduce(MEAN, axis=0),
    # which rejects scalars: give it one-element vectors (it returns
    # scalars). Every other strategy gets the scalars as they are.
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    multi_worker = isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and strategy.extended._in_multi_worker_mode()
    if not multi_worker:
        return logs
    return {name: tf.reshape(value, (1,)) for name, value in logs.items()}


# --- PyTorch: autograd ------------------------------------------------------


def _torch_train_step(model, data):
    import torch

    count = replicas().count

    def value_and_gradients(objective, variables):
        values = objective()
        scaled_loss = model.optimizer.scale_loss(_replica_share(values["loss"], count))
        tensors = [v.value for v in variables]
        gradients = torch.autograd.grad(scaled_loss, tensors, allow_unused=True)
        values = {name: value.detach() for name, value in values.items()}
        return values, [
            torch.zeros_like(t) if g is None else g for g, t in zip(gradients, tensors)
        ]

    variables = model.trainable_variables
    values, gradients = _values_and_gradients(
        model, _unpack_batch(data), value_and_gradients, variables
    )
    if count > 1:
        gradients = _torch_sum_over_processes(gradients)
        values = _torch_mean_over_processes(values, count)
    with torch.no_grad():
        model.optimizer.apply(gradients, variables)
    return model.update_objective_metrics(values)


def _torch_sum_over_processes(tensors):
    # One all-reduce of every gradient flattened together, as DDP buckets.
    import torch
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def _torch_mean_over_processes(values, count):
    names = sorted(values)
    summed = _torch_sum_over_processes([values[name] for name in names])
    return {name: value / count for name, value in zip(names, summed)}


def _torch_test_step(model, data):
    count = replicas().count
    values = model.compute_objective(_unpack_batch(data), training=False)
    if count > 1:
        values = _torch_mean_over_processes(values, count)
    return model.update_objective_metrics(values)


# --- JAX: pure functions of the variable values -----------------------------
# Inside a JAX step the model's variables hold no values; every read goes
# through a StatelessScope that maps each variable to the value passed in.


def _jax_objective(model, trainable, non_trainable, batch, training):
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += list(zip(model.non_trainable_variables, non_trainable))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        values = model.compute_objective(batch, training=training)
    return values, _jax_non_trainable_after(model, scope, non_trainable)


def _jax_non_trainable_after(model, scope, non_trainable):
    # Dropout seed generators advance: carry their new state out.
    updated = []
    for variable, value in zip(model.non_trainable_variables, non_trainable):
        new_value = scope.get_current_value(variable)
        updated.append(value if new_value is None else new_value)
    return updated


def _jax_update_metrics(model, metrics_variables, values):
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.update_objective_metrics(values)
    metrics_variables = [
        scope.get_current_value(v) for v in model.metrics_variables
    ]
    return logs, metrics_variables


def _jax_train_step(model, state, data):
    import jax

    trainable, non_trainable, optimizer_variables, metrics_variables = state
    model_variables = model.trainable_variables + model.non_trainable_variables
    model_values = list(trainable) + list(non_trainable)
    optimizer_mapping = list(zip(model.optimizer.variables, optimizer_variables))
    positions = {id(v): i for i, v in enumerate(model_variables)}
    updated_non_trainable = [non_trainable]

    def value_and_gradients(objective, variables):
        def scaled_loss(values_of_variables):
            values = list(model_values)
            for variable, value in zip(variables, values_of_variables):
                values[positions[id(variable)]] = value
            with keras.StatelessScope(
                state_mapping=list(zip(model_variables, values))
            ) as scope:
                objective_values = objective()
            with keras.StatelessScope(state_mapping=optimizer_mapping):
                loss = model.optimizer.scale_loss(objective_values["loss"])
            after = _jax_non_trainable_after(model, scope, non_trainable)
            return loss, (objective_values, after)

        (_, (values, after)), gradients = jax.value_and_grad(
            scaled_loss, has_aux=True
        )([model_values[positions[id(v)]] for v in variables])
        updated_non_trainable[0] = after
        return values, gradients

    # Reads outside `value_and_gradients` (accumulation's cached pass) see
    # the step's values too.
    with keras.StatelessScope(state_mapping=list(zip(model_variables, model_values))):
        values, gradients = _values_and_gradients(
            model, _unpack_batch(data), value_and_gradients, model.trainable_variables
        )
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, gradients, trainable
    )
    logs, metrics_variables = _jax_update_metrics(
        model, metrics_variables, values
    )
    state = (trainable, updated_non_trainable[0], optimizer_variables, metrics_variables)
    return logs, state


def _jax_test_step(model, state, data):
    trainable, non_trainable, metrics_variables = state
    values, non_trainable = _jax_objective(
        model, trainable, non_trainable, _unpack_batch(data), training=False
    )
    logs, metrics_variables = _jax_update_metrics(
        model, metrics_variables, values
    )
    return logs, (trainable, non_trainable, metrics_variables)


# --- Data-parallel replicas --------------------------------------------------
# The negatives of a contrastive loss are the whole global batch, so the
# losses need every replica's embeddings. Under tf.distribute (Mirrored,
# MultiWorkerMirrored, TPU strategies) each replica runs the step on its own
# slice, and under torch.distributed each process does: they gather. Under
# JAX's keras.distribution the step sees one global array that XLA
# partitions, so there is nothing to gather.


class Replicas:
    """The data-parallel group one training step runs in.

    Args:
        count: int, replicas that each run the step on a slice of the global
            batch (1 on one device and under JAX's keras.distribution).
        index: this replica's position in the group (int or int scalar
            tensor); its rows are rows `index * n … index * n + n - 1` of the
            gathered batch.
        gather: function concatenating every replica's tensor along axis 0,
            with gradients flowing back to each replica's own rows.
    """

    def __init__(self, count=1, index=0, gather=None):
        self.count = count
        self.index = index
        self.gather = gather or _identity


def _identity(x):
    return x


def replicas():
    """The `Replicas` the current step runs in (one device outside any)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return Replicas()
        return Replicas(
            count=context.num_replicas_in_sync,
            index=context.replica_id_in_sync_group,
            gather=lambda x: context.all_gather(x, axis=0),
        )
    if backend == "torch":
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return Replicas()
        if dist.get_world_size() == 1:
            return Replicas()
        return Replicas(
            count=dist.get_world_size(),
            index=dist.get_rank(),
            gather=lambda x: _torch_gather_function().apply(keras.ops.convert_to_tensor(x)),
        )
    return Replicas()


@functools.cache
def _torch_gather_function():
    import torch
    import torch.distributed as dist

    class AllGatherWithGradient(torch.autograd.Function):
        @staticmethod
        def forward(context, x):
            parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, x.contiguous())
            return torch.cat(parts)

        @staticmethod
        def backward(context, gradient):
            # Every process's loss reads these rows: sum all their gradients.
            gradient = gradient.contiguous()
            dist.all_reduce(gradient)
            rows = gradient.shape[0] // dist.get_world_size()
            start = dist.get_rank() * rows
            return gradient[start : start + rows]

    return AllGatherWithGradient


UNEVEN_REPLICA_BATCHES = (
    "The replicas got batches of different sizes: the global batch must "
    "divide by the number of replicas (each gets global batch / replicas "
    "examples, and the contrastive labels of replica r start at r times that)."
)


def check_replica_batches(replicas, images):
    """Raises if the replicas' slices of the global batch differ in size."""
    if replicas.count == 1:
        return
    size = keras.ops.convert_to_tensor(keras.ops.shape(images)[:1], "int32")
    sizes = replicas.gather(size)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_equal(
            tf.reduce_min(sizes), tf.reduce_max(sizes),
            message=UNEVEN_REPLICA_BATCHES,
        )
    elif len(set(sizes.tolist())) > 1:
        raise ValueError(f"{UNEVEN_REPLICA_BATCHES} Got sizes {sizes.tolist()}.")


def check_jit_compile(model, jit_compile):
    """Refuses XLA where it is known to fail: tf.distribute over CPU devices."""
    if keras.backend.backend() != "tensorflow" or jit_compile is not True:
        return
    strategy = model._distribute_strategy
    if strategy is None or strategy.num_replicas_in_sync == 1:
        return
    if all("CPU" in device.upper() for device in strategy.extended.worker_devices):
        raise ValueError(
            "jit_compile=True fails under tf.distribute when the replicas "
            "are CPU devices (XLA cannot read a variable placed on another "
            "CPU device: 'resource ... located in device CPU:1'). Compile "
            "with jit_compile=False, or leave the default 'auto', which "
            "chooses it."
        )


def build_optimizer_in_strategy_scope(model):
    """Creates the optimizer's variables under the model's tf.distribute strategy."""
    strategy = model._distribute_strategy
    if strategy is None or model.optimizer is None or model.optimizer.built:
        return
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)


def synchronize_weights(model):
    """Torch processes start from process 0's weights (as DDP does)."""
    if keras.backend.backend() != "torch" or replicas().count == 1:
        return
    import torch.distributed as dist

    for weight in model.weights:
        dist.broadcast(weight.value.data, src=0)


# --- Batch size known only at run time (TensorFlow graphs) ------------------
# JAX and PyTorch always see concrete shapes, so the model's own check raises;
# a TensorFlow graph may see batch size None (a dataset without
# drop_remainder) and must check as it runs.

BATCH_TOO_SMALL = (
    "A contrastive loss needs a batch of at least 2 examples (the rest of the "
    "batch are the negatives of each example); got a batch of 1. Batch "
    "datasets with drop_remainder=True."
)


def assert_batch_size_at_least_two(images):
    """Adds a run-time check where the batch size is not known in advance."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_greater_equal(
            tf.shape(images)[0], 2, message=BATCH_TOO_SMALL
        )


# The variable groups of Keras's JAX train and test states, in their order.
JAX_TRAIN_STATE = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")
JAX_TEST_STATE = ("trainable_variables", "non_trainable_variables", "metrics_variables")


def keep_weights_on_error(model, step_function, state_keys):
    """On JAX, a step that raises leaves the model's weights in place.

    Keras's JAX `fit` / `evaluate` take the variables' values out of the
    model when they start and put them back when they end; a step that raises
    in between (a refused batch, say) would leave the model without weights.
    Here the values the step was given are put back before the error goes on.
    """
    if keras.backend.backend() != "jax":
        return step_function

    def step_keeping_weights(state, data):
        try:
            return step_function(state, data)
        except Exception:
            model._jax_state = dict(zip(state_keys, state))
            model._jax_state_synced = False
            model.jax_state_sync()
            raise

    return step_keeping_weights


def raise_value_errors(step_function):
    """Re-raises TensorFlow's run-time batch-size checks as ValueErrors."""
    if keras.backend.backend() != "tensorflow":
        return step_function
    import tensorflow as tf

    def checked_step_function(*args):
        try:
            return step_function(*args)
        except tf.errors.InvalidArgumentError as error:
            for message in (
                BATCH_TOO_SMALL,
                UNEVEN_REPLICA_BATCHES,
                ACCUMULATION_INDIVISIBLE,
            ):
                if message in error.message:
                    raise ValueError(message) from None
            raise

    return checked_step_function


def compile_function(function):
    """Compiles a pure function of tensors written with `keras.ops`.

    jax.jit on JAX and an XLA tf.function on TensorFlow compile it once per
    input shape (one dispatch instead of one per operation); PyTorch runs it
    eagerly.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True, reduce_retracing=True)
    return function


# Scratch buffers of torch_adam_update, per optimizer: (variable ids, buffers).
_ADAM_SCRATCH = weakref.WeakKeyDictionary()


def torch_adam_update(optimizer, gradients, variables, learning_rate, fused=False):
    """Keras's Adam update of `variables` on PyTorch, without its temporaries.

    Keras's own PyTorch update allocates five temporary copies of the
    weights every step (benchmarks/optimizer_step.py measures the cost).

    Args:
        optimizer: a `keras.optimizers.Adam` or `AdamW` (built).
        gradients: one tensor per variable.
        variables: the Keras variables to update.
        learning_rate: the current learning rate (tensor or float).
        fused: False runs Keras's own sequence of operations, bit for bit,
            into two scratch copies of the weights kept between steps. True
            runs one `torch._fused_adamw_` kernel: the same rule (the bias
            corrections folded into the step size, epsilon added to the
            uncorrected `sqrt(v)`), in a different order of float32 rounding.

    Returns:
        True if it updated the variables; False (nothing done) on another
        backend, with AMSGrad, or for variables of several dtypes or devices.
    """
    if keras.backend.backend() != "torch" or optimizer.amsgrad:
        return False
    import torch

    values = [v.value for v in variables]
    gradients = list(gradients)
    if len({(t.dtype, t.device) for t in values + gradients}) != 1:
        return False
    ops = keras.ops
    dtype = values[0].dtype
    step = ops.cast(optimizer.iterations + 1, dtype)
    beta_1, beta_2 = optimizer.beta_1, optimizer.beta_2
    # Keras's step size, computed as keras.optimizers.Adam does on PyTorch.
    alpha = (
        ops.cast(learning_rate, dtype)
        * ops.sqrt(1 - ops.power(ops.cast(beta_2, dtype), step))
        / (1 - ops.power(ops.cast(beta_1, dtype), step))
    )
    index = optimizer._get_variable_index
    momentums = [optimizer._momentums[index(v)].value for v in variables]
    velocities = [optimizer._velocities[index(v)].value for v in variables]
    with torch.no_grad():
        if fused:
            # The kernel corrects the moments' bias itself with 1 - beta^step;
            # at this step count beta^step is 0, so it applies `alpha` as given.
            no_bias_correction = torch.full((), 2.0**30, dtype=dtype, device=values[0].device)
            torch._fused_adamw_(
                values, gradients, momentums, velocities, [],
                [no_bias_correction] * len(values),
                lr=alpha, beta1=beta_1, beta2=beta_2,
                weight_decay=0.0,  # Keras has applied the decoupled decay
                eps=optimizer.epsilon, amsgrad=False, maximize=False,
            )
            return True
        key = tuple(id(v) for v in variables)
        if _ADAM_SCRATCH.get(optimizer, (None,))[0] != key:
            _ADAM_SCRATCH[optimizer] = (
                key, [torch.empty_like(t) for t in values], [torch.empty_like(t) for t in values]
            )
        _, squares, updates = _ADAM_SCRATCH[optimizer]
        # keras/src/backend/torch/optimizers/torch_adam.py, operation for
        # operation, each result written into a scratch buffer.
        torch._foreach_mul_(momentums, beta_1)
        torch._foreach_add_(momentums, gradients, alpha=1 - beta_1)
        torch._foreach_mul_(velocities, beta_2)
        torch._foreach_copy_(squares, gradients)
        torch._foreach_mul_(squares, gradients)
        torch._foreach_add_(velocities, squares, alpha=1 - beta_2)
        denominators = squares  # the squares are used up
        torch._foreach_copy_(denominators, velocities)
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, optimizer.epsilon)
        torch._foreach_copy_(updates, momentums)
        torch._foreach_mul_(updates, alpha)
        torch._foreach_div_(updates, denominators)
        torch._foreach_add_(values, updates, alpha=-1)
    return True


def no_gradients():
    """A context in which nothing records gradients: inference.

    PyTorch's autograd records every op on weights that require grad, so
    outputs would keep a graph (and refuse `np.asarray`); JAX and TensorFlow
    record only inside their gradient functions.
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


_STEPS = {
    "tensorflow": (_tensorflow_train_step, _tensorflow_test_step),
    "torch": (_torch_train_step, _torch_test_step),
    "jax": (_jax_train_step, _jax_test_step),
}


def _steps():
    backend = keras.backend.backend()
    if backend not in _STEPS:
        raise RuntimeError(
            f"keras_3t supports the tensorflow, jax and torch backends; "
            f"KERAS_BACKEND is {backend!r}."
        )
    return _STEPS[backend]


def train_step(model, *args):
    """One optimisation step of `model` on a batch (backend's own signature)."""
    return _steps()[0](model, *args)


def test_step(model, *args):
    """One evaluation step of `model` on a batch (backend's own signature)."""
    return _steps()[1](model, *args)
