"""The objective's gradients, with or without gradient accumulation.

Each backend's step supplies `value_and_gradients(objective, variables)`:
it calls `objective()` (a dict of values whose "loss" is minimised) and
returns the values and the gradients of this replica's share of the loss.
The rest is written once, here.
"""

import keras

from keras_3t.distributed import replicas

ACCUMULATION_INDIVISIBLE = (
    "The batch does not divide into accumulation_steps micro-batches of "
    "equal size: use a batch size (per replica) that is a multiple of "
    "accumulation_steps."
)


def values_and_gradients(model, batch, value_and_gradients, variables):
    """The objective's values and gradients on `variables`.

    Args:
        model: the `ThreeTowerModel`.
        batch: the model's inputs (a dict of tensors).
        value_and_gradients: the backend's `value_and_gradients(objective,
            variables)`.
        variables: `model.trainable_variables`, read once by the caller:
            Keras collects it by walking every layer at each read, which on
            eager PyTorch is paid at every step.

    Returns:
        `(values, gradients)`: the objective's dict and one gradient per
        variable.
    """
    if model.accumulation_steps == 1:
        return value_and_gradients(lambda: model.compute_objective(batch, training=True), variables)
    return _accumulated_values_and_gradients(model, batch, value_and_gradients, variables)


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
            keras.tree.map_structure(lambda value, i=i: value[i * size : (i + 1) * size], batch)
        )
        for i in range(steps)
    ]
    cached = [
        keras.tree.map_structure(keras.ops.stop_gradient, model.embed_batch(micro, training=True))
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


def check_micro_batches(images, steps):
    """Raises if a batch does not split into `steps` equal micro-batches."""
    size = images.shape[0]
    if size is not None:
        if size % steps:
            raise ValueError(
                f"{ACCUMULATION_INDIVISIBLE} Got a batch of {size} and accumulation_steps={steps}."
            )
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_equal(tf.shape(images)[0] % steps, 0, message=ACCUMULATION_INDIVISIBLE)


def check_accumulation_steps(model, steps):
    """Raises unless `steps` is a positive int the model's towers allow."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"accumulation_steps must be a positive integer; got {steps!r}.")
    if steps == 1:
        return
    dropout = sorted(
        layer.name
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Dropout) and layer.rate > 0
    )
    if dropout:
        raise ValueError(
            "accumulation_steps > 1 embeds each micro-batch twice, and "
            "dropout would draw different masks in the two passes (the "
            "gradients would not be the whole batch's). Build the towers "
            f"without dropout; these layers have it: {dropout[:5]}."
        )
