"""Errors a step raises as it runs, made the same on every backend.

JAX and PyTorch see concrete shapes, so the model's checks raise
ValueErrors at once. A TensorFlow graph may see batch size None (a dataset
without drop_remainder) and checks as it runs; its InvalidArgumentErrors are
raised again here as the ValueErrors the other backends give. On JAX, a step
that raises puts the model's weights back.
"""

import keras

from keras_3t.distributed import UNEVEN_REPLICA_BATCHES
from keras_3t.training.accumulation import ACCUMULATION_INDIVISIBLE

BATCH_TOO_SMALL = (
    "A contrastive loss needs a batch of at least 2 examples (the rest of the "
    "batch are the negatives of each example); got a batch of 1. Batch "
    "datasets with drop_remainder=True."
)

# The variable groups of Keras's JAX train and test states, in their order.
JAX_STATE = {
    "train": (
        "trainable_variables",
        "non_trainable_variables",
        "optimizer_variables",
        "metrics_variables",
    ),
    "test": ("trainable_variables", "non_trainable_variables", "metrics_variables"),
}


def assert_batch_size_at_least_two(images):
    """Adds a run-time check where the batch size is not known in advance."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_greater_equal(tf.shape(images)[0], 2, message=BATCH_TOO_SMALL)


def step_function_with_errors(model, step_function, kind):
    """`step_function` raising the same errors on every backend.

    Args:
        model: the model whose `train_function` or `test_function` this is.
        step_function: the function Keras made.
        kind: `"train"` or `"test"`.

    Returns:
        The function to use in its place.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _raising_value_errors(step_function)
    if backend == "jax":
        return _keeping_weights_on_error(model, step_function, JAX_STATE[kind])
    return step_function


def _keeping_weights_on_error(model, step_function, state_keys):
    # Keras's JAX `fit` / `evaluate` take the variables' values out of the
    # model when they start and put them back when they end; a step that
    # raises in between (a refused batch, say) would leave the model without
    # weights. The values the step was given go back before the error does.
    def step_keeping_weights(state, data):
        try:
            return step_function(state, data)
        except Exception:
            model._jax_state = dict(zip(state_keys, state))
            model._jax_state_synced = False
            model.jax_state_sync()
            raise

    return step_keeping_weights


def _raising_value_errors(step_function):
    import tensorflow as tf

    def checked_step_function(*args):
        try:
            return step_function(*args)
        except tf.errors.InvalidArgumentError as error:
            for message in (BATCH_TOO_SMALL, UNEVEN_REPLICA_BATCHES, ACCUMULATION_INDIVISIBLE):
                if message in error.message:
                    raise ValueError(message) from None
            raise

    return checked_step_function
