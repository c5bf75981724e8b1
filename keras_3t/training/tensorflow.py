"""TensorFlow's steps: GradientTape, and tf.distribute's replicas."""

import tensorflow as tf

from keras_3t.distributed import replica_share
from keras_3t.distributed import replicas
from keras_3t.training import unpack_batch
from keras_3t.training.accumulation import values_and_gradients


def value_and_gradients_function(model, count):
    """The `value_and_gradients` of a TensorFlow step on `count` replicas.

    Each call chains after the previous call's gradients (accumulation's
    micro-batch passes); gradients are dense, and zeros for variables the
    objective does not reach.
    """
    previous_gradients = []

    def value_and_gradients(objective, variables):
        # Accumulation's passes run one after another: TensorFlow's executor
        # would otherwise run the independent micro-batch passes at once and
        # hold every micro-batch's activations.
        with tf.control_dependencies(previous_gradients), tf.GradientTape() as tape:
            values = objective()
            scaled_loss = model.optimizer.scale_loss(replica_share(values["loss"], count))
        # Embedding gradients come as IndexedSlices, one row per use of a
        # row (a token in several captions; each replica's rows under
        # tf.distribute). Keras's Adam would square each of those before
        # summing them; dense, they are summed first, as on JAX and PyTorch
        # (and accumulation can add them up).
        gradients = [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(tape.gradient(scaled_loss, variables), variables)
        ]
        previous_gradients[:] = gradients
        return values, gradients

    return value_and_gradients


def train_step(model, data):
    """One optimisation step of `model` on a batch."""
    values, gradients = values_and_gradients(
        model,
        unpack_batch(data),
        value_and_gradients_function(model, replicas().count),
        model.trainable_variables,
    )
    if model.accumulation_steps > 1:
        # No variable changes before every gradient is computed: the
        # micro-batch passes read the logit scales, whose own gradients come
        # from the first pass only, and the scales' update would race those
        # reads. Identities, not a context around `apply`, which XLA refuses
        # (the optimizer may create variables there).
        with tf.control_dependencies(gradients):
            gradients = [tf.identity(g) for g in gradients]
    # Under tf.distribute the optimizer sums the replicas' gradients.
    model.optimizer.apply(gradients, model.trainable_variables)
    return _logs(model.update_objective_metrics(values))


def test_step(model, data):
    """One evaluation step of `model` on a batch."""
    values = model.compute_objective(unpack_batch(data), training=False)
    return _logs(model.update_objective_metrics(values))


def _logs(logs):
    # Keras reduces multi-worker logs with strategy.reduce(MEAN, axis=0),
    # which rejects scalars: give it one-element vectors (it returns
    # scalars). Every other strategy gets the scalars as they are.
    strategy = tf.distribute.get_strategy()
    multi_worker = (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )
    if not multi_worker:
        return logs
    return {name: tf.reshape(value, (1,)) for name, value in logs.items()}
