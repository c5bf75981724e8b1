"""The only backend-specific code: gradient plumbing of the train/test steps.

`ThreeTowerModel.compute_objective(batch, training)` holds all the math and
returns a dict of scalars whose `"loss"` entry is minimised; the functions
here differentiate it and apply the optimizer the way each backend requires.
"""

import keras


def _unpack_batch(data):
    batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return batch


# --- TensorFlow: GradientTape ---------------------------------------------


def _tensorflow_train_step(model, data):
    import tensorflow as tf

    batch = _unpack_batch(data)
    with tf.GradientTape() as tape:
        values = model.compute_objective(batch, training=True)
        scaled_loss = model.optimizer.scale_loss(values["loss"])
    weights = model.trainable_weights
    model.optimizer.apply(tape.gradient(scaled_loss, weights), weights)
    return model.update_objective_metrics(values)


def _tensorflow_test_step(model, data):
    values = model.compute_objective(_unpack_batch(data), training=False)
    return model.update_objective_metrics(values)


# --- PyTorch: autograd ------------------------------------------------------


def _torch_train_step(model, data):
    import torch

    batch = _unpack_batch(data)
    model.zero_grad()
    values = model.compute_objective(batch, training=True)
    model.optimizer.scale_loss(values["loss"]).backward()
    weights = model.trainable_weights
    with torch.no_grad():
        model.optimizer.apply([w.value.grad for w in weights], weights)
    return model.update_objective_metrics(
        {name: value.detach() for name, value in values.items()}
    )


_torch_test_step = _tensorflow_test_step


# --- JAX: pure functions of the variable values -----------------------------
# Inside a JAX step the model's variables hold no values; every read goes
# through a StatelessScope that maps each variable to the value passed in.


def _jax_objective(model, trainable, non_trainable, batch, training):
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += list(zip(model.non_trainable_variables, non_trainable))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        values = model.compute_objective(batch, training=training)
    # Dropout seed generators advance: carry their new state out.
    updated = []
    for variable, value in zip(model.non_trainable_variables, non_trainable):
        new_value = scope.get_current_value(variable)
        updated.append(value if new_value is None else new_value)
    return values, updated


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
    batch = _unpack_batch(data)

    def scaled_loss(trainable, non_trainable):
        values, non_trainable = _jax_objective(
            model, trainable, non_trainable, batch, training=True
        )
        optimizer_mapping = zip(model.optimizer.variables, optimizer_variables)
        with keras.StatelessScope(state_mapping=list(optimizer_mapping)):
            loss = model.optimizer.scale_loss(values["loss"])
        return loss, (values, non_trainable)

    (_, (values, non_trainable)), grads = jax.value_and_grad(
        scaled_loss, has_aux=True
    )(trainable, non_trainable)
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, grads, trainable
    )
    logs, metrics_variables = _jax_update_metrics(
        model, metrics_variables, values
    )
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)


def _jax_test_step(model, state, data):
    trainable, non_trainable, metrics_variables = state
    values, non_trainable = _jax_objective(
        model, trainable, non_trainable, _unpack_batch(data), training=False
    )
    logs, metrics_variables = _jax_update_metrics(
        model, metrics_variables, values
    )
    return logs, (trainable, non_trainable, metrics_variables)


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


def raise_value_errors(step_function):
    """Re-raises the run-time batch-size check of TensorFlow as a ValueError."""
    if keras.backend.backend() != "tensorflow":
        return step_function
    import tensorflow as tf

    def checked_step_function(*args):
        try:
            return step_function(*args)
        except tf.errors.InvalidArgumentError as error:
            if BATCH_TOO_SMALL in error.message:
                raise ValueError(BATCH_TOO_SMALL) from None
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
