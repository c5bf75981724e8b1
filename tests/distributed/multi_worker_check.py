"""Run by tests/distributed/test_distributed.py as two MultiWorkerMirroredStrategy workers.

    python tests/distributed/multi_worker_check.py INDEX PORT0 PORT1 OUTPUT.npz

Each worker (TF_CONFIG with two 127.0.0.1 ports) trains a tiny 3T model for
three steps on one global batch of 16 (8 examples per worker), then, outside
the strategy, trains the same model on the whole batch on one device.
Writes both sets of final weights to OUTPUT.npz and prints one JSON line.
"""

import json
import os
import sys

if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402


def train(model, batch):
    import keras
    import tensorflow as tf

    # SGD: see tests/distributed/tf_check.py.
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(16)
    history = model.fit(dataset, epochs=3, verbose=0)
    return history.history["loss"], model.get_weights()


def main(index, port0, port1, output):
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port0}", f"127.0.0.1:{port1}"]},
            "task": {"type": "worker", "index": index},
        }
    )
    import keras
    import tensorflow as tf

    # The strategy must exist before any other TensorFlow op runs.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    from keras_3t.demo import toy
    from tests.helpers import tiny_model

    batch = toy.toy_batch(16, image_size=16, seed=0)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = tiny_model("3t")
    initial = model.get_weights()
    losses, weights = train(model, batch)

    single = tiny_model("3t")
    single.set_weights(initial)
    single_losses, single_weights = train(single, batch)
    np.savez(output, *weights, *single_weights)
    print(
        json.dumps(
            {
                "worker": index,
                "replicas": strategy.num_replicas_in_sync,
                "losses": losses,
                "single_losses": single_losses,
                "max_weight_difference_to_single": max(
                    float(np.max(np.abs(a - b))) for a, b in zip(weights, single_weights)
                ),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
