"""Run by tests/distributed/test_distributed.py in a subprocess with 4 logical CPUs.

Prints one JSON line comparing `tf.distribute.MirroredStrategy` over four
logical CPU devices with one device: the pair losses and their gradients
(global and local), hard cross-device negatives, the 3T objective and its
gradients, `fit` weights (with and without gradient accumulation), and the
error for a global batch that does not divide by the replica count.
"""

import json
import os
import sys

if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPLICAS = 4


def make_strategy():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS
    )
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def max_difference(xs, ys):
    # Embedding-table gradients come as IndexedSlices: densify them.
    xs, ys = ([np.asarray(tf.convert_to_tensor(v)) for v in vs] for vs in (xs, ys))
    return max(float(np.max(np.abs(x - y))) for x, y in zip(xs, ys))


def pair_loss_checks(strategy):
    """Value and gradients of each loss, on one device and over the replicas."""
    from keras_3t import distributed
    from keras_3t.losses import contrastive_loss
    from keras_3t.losses import l2_normalize
    from keras_3t.losses import sigmoid_contrastive_loss

    rng = np.random.default_rng(0)
    a0, b0 = rng.normal(size=(2, 16, 8)).astype("float32")
    losses = {
        "softmax": lambda a, b, s, bias, **kw: contrastive_loss(a, b, s, **kw),
        "sigmoid": sigmoid_contrastive_loss,
    }
    results = {}
    for name, loss in losses.items():
        # One device: the global loss and its gradients.
        a, b, s, bias = (tf.Variable(v) for v in (a0, b0, 10.0, -5.0))
        with tf.GradientTape() as tape:
            single = loss(l2_normalize(a), l2_normalize(b), s, bias)
        single_grads = [g for g in tape.gradient(single, [a, b, s, bias]) if g is not None]
        for local in (False, True):
            with strategy.scope():
                a, b, s, bias = (tf.Variable(v) for v in (a0, b0, 10.0, -5.0))

            @tf.function
            def step():
                def replica_fn():
                    replicas = distributed.replicas()
                    rows = 16 // replicas.count
                    start = replicas.index * rows
                    with tf.GradientTape() as tape:
                        value = loss(
                            l2_normalize(a[start : start + rows]),
                            l2_normalize(b[start : start + rows]),
                            s,
                            bias,
                            replicas=replicas,
                            local=local,
                        )
                        share = value / replicas.count
                    return value, tape.gradient(share, [a, b, s, bias])

                values, grads = strategy.run(replica_fn)
                mean = strategy.reduce("MEAN", values, axis=None)
                return mean, [strategy.reduce("SUM", g, axis=None) for g in grads if g is not None]

            value, grads = step()
            key = f"{name}_{'local' if local else 'global'}"
            results[key] = {
                "single": float(single),
                "parallel": float(value),
                "max_gradient_difference": max_difference(grads, single_grads),
            }
    return results


def hard_negative_checks(strategy):
    """Only cross-device negatives are hard: rows r and r + 4 are identical."""
    from keras_3t import distributed
    from keras_3t.losses import contrastive_loss

    basis = np.eye(8, dtype="float32")
    a = np.concatenate([basis[:4]] * REPLICAS)  # replica r holds e0..e3
    b = a.copy()
    single = float(contrastive_loss(a, b, 20.0))
    per_device = np.mean(
        [float(contrastive_loss(a[i : i + 4], b[i : i + 4], 20.0)) for i in range(0, 16, 4)]
    )
    results = {"single": single, "mean_of_per_device": float(per_device)}
    a, b = tf.constant(a), tf.constant(b)
    for local in (False, True):

        @tf.function
        def step():
            def replica_fn():
                replicas = distributed.replicas()
                start = replicas.index * 4
                return contrastive_loss(
                    a[start : start + 4], b[start : start + 4], 20.0, replicas=replicas, local=local
                )

            return strategy.reduce("MEAN", strategy.run(replica_fn), axis=None)

        results["local" if local else "global"] = float(step())
    return results


def model_checks(strategy):
    """The 3T objective, its gradients and three fit steps: global, local, accumulated."""
    import keras

    from keras_3t.demo import toy
    from keras_3t.training.accumulation import values_and_gradients
    from keras_3t.training.tensorflow import value_and_gradients_function
    from tests.helpers import DATA_PARALLEL_MODES
    from tests.helpers import tiny_model

    batch = toy.toy_batch(16, image_size=16, seed=0)
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(16)

    keras.utils.set_random_seed(0)
    single = tiny_model("3t")
    weights = single.get_weights()
    with tf.GradientTape() as tape:
        single_values = single.compute_objective(batch)
    single_grads = tape.gradient(single_values["loss"], single.trainable_variables)
    per_device = np.mean(
        [
            float(single.compute_objective({k: v[i : i + 4] for k, v in batch.items()})["loss"])
            for i in range(0, 16, 4)
        ]
    )
    # SGD: Adam divides each gradient entry by its own size, so float32
    # reduction noise in entries that are zero in exact arithmetic (e.g.
    # attention key biases) would become whole ±learning-rate steps.
    single.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    single.fit(dataset, epochs=3, verbose=0)
    results = {
        "single_loss": float(single_values["loss"]),
        "mean_of_per_device_losses": float(per_device),
    }

    # "accumulated": the global loss, each replica's 4 rows in two
    # micro-batches of 2 (the negatives still the global 16).
    for mode, (local_loss, accumulation_steps) in DATA_PARALLEL_MODES.items():
        with strategy.scope():
            model = tiny_model("3t", local_loss=local_loss)
            model.set_weights(weights)
            model.compile(
                optimizer=keras.optimizers.SGD(0.1),
                jit_compile=False,
                accumulation_steps=accumulation_steps,
            )

        @tf.function
        def objective_and_gradients(distributed):
            def replica_fn(local_batch):
                # The train step's gradients, accumulated or not.
                values, gradients = values_and_gradients(
                    model,
                    local_batch,
                    value_and_gradients_function(model, strategy.num_replicas_in_sync),
                    model.trainable_variables,
                )
                return values["loss"], [tf.convert_to_tensor(g) for g in gradients]

            values, grads = strategy.run(replica_fn, args=(distributed,))
            mean = strategy.reduce("MEAN", values, axis=None)
            return mean, [strategy.reduce("SUM", g, axis=None) for g in grads]

        distributed = next(iter(strategy.experimental_distribute_dataset(dataset)))
        loss, grads = objective_and_gradients(distributed)
        history = model.fit(dataset, epochs=3, verbose=0)
        results[mode] = {
            "loss": float(loss),
            "max_gradient_difference": max_difference(grads, single_grads),
            "first_fit_loss": float(history.history["loss"][0]),
            "max_weight_difference": max_difference(model.get_weights(), single.get_weights()),
        }

    try:
        model.compile(jit_compile=True)
        results["jit_compile_error"] = None
    except ValueError as error:
        results["jit_compile_error"] = str(error)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile="auto")

    # A global batch of 10 over 4 replicas splits unevenly.
    uneven = tf.data.Dataset.from_tensor_slices(toy.toy_batch(10, image_size=16, seed=0)).batch(10)
    try:
        model.fit(uneven, epochs=1, verbose=0)
        results["uneven_batch_error"] = None
    except ValueError as error:
        results["uneven_batch_error"] = str(error)
    return results


def main():
    strategy = make_strategy()
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "pair_losses": pair_loss_checks(strategy),
                "hard_negatives": hard_negative_checks(strategy),
                "model": model_checks(strategy),
            }
        )
    )


if __name__ == "__main__":
    main()
