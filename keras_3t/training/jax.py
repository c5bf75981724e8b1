"""JAX's steps: pure functions of the variables' values.

Inside a JAX step the model's variables hold no values; every read goes
through a StatelessScope that maps each variable to the value passed in.
Under keras.distribution the step sees one global array that XLA
partitions, so there is nothing to gather.
"""

import jax
import keras

from keras_3t.training import unpack_batch
from keras_3t.training.accumulation import values_and_gradients


def train_step(model, state, data):
    """One optimisation step: `(logs, new_state)` from Keras's JAX train state."""
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
            with keras.StatelessScope(state_mapping=list(zip(model_variables, values))) as scope:
                objective_values = objective()
            with keras.StatelessScope(state_mapping=optimizer_mapping):
                loss = model.optimizer.scale_loss(objective_values["loss"])
            after = _non_trainable_after(model, scope, non_trainable)
            return loss, (objective_values, after)

        (_, (values, after)), gradients = jax.value_and_grad(scaled_loss, has_aux=True)(
            [model_values[positions[id(v)]] for v in variables]
        )
        updated_non_trainable[0] = after
        return values, gradients

    # Reads outside `value_and_gradients` (accumulation's cached pass) see
    # the step's values too.
    with keras.StatelessScope(state_mapping=list(zip(model_variables, model_values))):
        values, gradients = values_and_gradients(
            model, unpack_batch(data), value_and_gradients, model.trainable_variables
        )
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, gradients, trainable
    )
    logs, metrics_variables = _update_metrics(model, metrics_variables, values)
    state = (trainable, updated_non_trainable[0], optimizer_variables, metrics_variables)
    return logs, state


def test_step(model, state, data):
    """One evaluation step: `(logs, new_state)` from Keras's JAX test state."""
    trainable, non_trainable, metrics_variables = state
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += list(zip(model.non_trainable_variables, non_trainable))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        values = model.compute_objective(unpack_batch(data), training=False)
    non_trainable = _non_trainable_after(model, scope, non_trainable)
    logs, metrics_variables = _update_metrics(model, metrics_variables, values)
    return logs, (trainable, non_trainable, metrics_variables)


def _non_trainable_after(model, scope, non_trainable):
    # Dropout seed generators advance: carry their new state out.
    updated = []
    for variable, value in zip(model.non_trainable_variables, non_trainable):
        new_value = scope.get_current_value(variable)
        updated.append(value if new_value is None else new_value)
    return updated


def _update_metrics(model, metrics_variables, values):
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.update_objective_metrics(values)
    return logs, [scope.get_current_value(v) for v in model.metrics_variables]
