"""Run by tests/distributed/test_distributed.py in subprocesses with logical CPUs.

    python tests/distributed/tf_check.py losses|model

Prints one JSON line comparing `tf.distribute.MirroredStrategy` with one
device. `losses`, over four logical CPU devices: the pair losses and their
gradients (global and local) and hard cross-device negatives. `model`, over
two: `fit` on the 3T objective (global, local and accumulated), the first
step's loss and gradients, the weights after three steps, and the error for
a global batch that does not divide by the replica count.
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
LEARNING_RATE = 0.1


def make_strategy(replicas):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
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
    from tests.helpers import DATA_PARALLEL_MODES
    from tests.helpers import tiny_model
    from tests.helpers import two_frozen_towers

    batch = toy.toy_batch(16, image_size=16, seed=0)
    rows = 16 // strategy.num_replicas_in_sync
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(16)

    keras.utils.set_random_seed(0)
    single = tiny_model(third_towers=two_frozen_towers())
    weights = single.get_weights()
    per_device = np.mean(
        [
            float(single.compute_objective({k: v[i : i + rows] for k, v in batch.items()})["loss"])
            for i in range(0, 16, rows)
        ]
    )

    def fit_three_steps(model):
        """The first step's loss and gradients, and the weights after three.

        SGD moves each weight by the learning rate times its gradient, so
        the first step's weight change gives the gradients; Adam would
        divide each entry by its own size and turn float32 reduction noise
        in entries that are zero in exact arithmetic (attention key biases)
        into whole steps.
        """
        after_first = []
        record = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: epoch or after_first.extend(model.get_weights())
        )
        history = model.fit(dataset, epochs=3, verbose=0, callbacks=[record])
        gradients = [(w - w1) / LEARNING_RATE for w, w1 in zip(weights, after_first)]
        return history.history["loss"][0], gradients, model.get_weights()

    single.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile=False)
    single_loss, single_gradients, single_weights = fit_three_steps(single)
    results = {"single_loss": float(single_loss), "mean_of_per_device_losses": float(per_device)}

    # "accumulated": the global loss, each replica's 8 rows in two
    # micro-batches of 4 (the negatives still the global 16).
    for mode, (local_loss, accumulation_steps) in DATA_PARALLEL_MODES.items():
        with strategy.scope():
            model = tiny_model(third_towers=two_frozen_towers(), local_loss=local_loss)
            model.set_weights(weights)
            model.compile(
                optimizer=keras.optimizers.SGD(LEARNING_RATE),
                jit_compile=False,
                accumulation_steps=accumulation_steps,
            )
        loss, gradients, final_weights = fit_three_steps(model)
        results[mode] = {
            "first_fit_loss": float(loss),
            "max_gradient_difference": max_difference(gradients, single_gradients),
            "max_weight_difference": max_difference(final_weights, single_weights),
        }

    try:
        model.compile(jit_compile=True)
        results["jit_compile_error"] = None
    except ValueError as error:
        results["jit_compile_error"] = str(error)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile="auto")

    # A global batch of 9 over 2 replicas splits unevenly.
    uneven = tf.data.Dataset.from_tensor_slices(toy.toy_batch(9, image_size=16, seed=0)).batch(9)
    try:
        model.fit(uneven, epochs=1, verbose=0)
        results["uneven_batch_error"] = None
    except ValueError as error:
        results["uneven_batch_error"] = str(error)
    return results


def main(part):
    if part == "losses":
        strategy = make_strategy(REPLICAS)
        results = {
            "pair_losses": pair_loss_checks(strategy),
            "hard_negatives": hard_negative_checks(strategy),
        }
    else:
        # Two replicas: a model's graphs take longer to build the more
        # replicas there are.
        strategy = make_strategy(2)
        results = {"model": model_checks(strategy)}
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, **results}))


if __name__ == "__main__":
    main(sys.argv[1])
