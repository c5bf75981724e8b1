"""Run by tests/test_distributed.py in a subprocess with 4 simulated CPU devices.

Prints one JSON line comparing `keras.distribution.DataParallel` with a
single device: the 3T loss on one global batch, the loss averaged over the
four per-device slices, and the weights after three `fit` steps.
"""

import json
import os
import sys

if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.datasets import toy  # noqa: E402
from tests.conftest import tiny_model  # noqa: E402

BATCH = toy.toy_batch(16, image_size=16, seed=0)


def train(distribution):
    keras.utils.set_random_seed(0)
    keras.distribution.set_distribution(distribution)
    try:
        model = tiny_model("3t")
        model.compile(learning_rate=1e-2)
        loss = float(model.compute_objective(BATCH)["loss"])
        slices = [{k: v[4 * i:4 * i + 4] for k, v in BATCH.items()} for i in range(4)]
        per_device = float(np.mean([float(model.compute_objective(s)["loss"]) for s in slices]))
        model.fit(BATCH, batch_size=16, epochs=3, verbose=0, shuffle=False)
        return loss, per_device, [np.asarray(w) for w in model.get_weights()]
    finally:
        keras.distribution.set_distribution(None)


def main():
    single_loss, per_device, single_weights = train(None)
    parallel_loss, _, parallel_weights = train(keras.distribution.DataParallel(devices=jax.devices()))
    print(json.dumps({
        "devices": len(jax.devices()),
        "single_loss": single_loss,
        "parallel_loss": parallel_loss,
        "mean_of_per_device_losses": per_device,
        "max_weight_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(single_weights, parallel_weights)),
    }))


if __name__ == "__main__":
    main()
