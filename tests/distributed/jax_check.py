"""Run by tests/distributed/test_distributed.py in a subprocess with 4 simulated CPU devices.

Prints one JSON line comparing `keras.distribution.DataParallel` with a
single device: the first `fit` loss on one global batch (with the global and
the local loss, and with gradient accumulation), the loss averaged over the
four per-device slices, the weights after three `fit` steps, and the error
for a global batch of 10.
"""

import json
import os
import sys

if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "jax"
    # Added to the flags the test run set (tests/conftest.py).
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.demo import toy  # noqa: E402
from tests.helpers import DATA_PARALLEL_MODES  # noqa: E402
from tests.helpers import tiny_model  # noqa: E402
from tests.helpers import two_frozen_towers  # noqa: E402

BATCH = toy.toy_batch(16, image_size=16, seed=0)


def train(distribution, local_loss=False, accumulation_steps=1):
    keras.utils.set_random_seed(0)
    keras.distribution.set_distribution(distribution)
    try:
        model = tiny_model(third_towers=two_frozen_towers(), local_loss=local_loss)
        model.compile(learning_rate=1e-2, accumulation_steps=accumulation_steps)
        history = model.fit(BATCH, batch_size=16, epochs=3, verbose=0, shuffle=False)
        weights = [np.asarray(w) for w in model.get_weights()]
        return history.history["loss"][0], weights
    finally:
        keras.distribution.set_distribution(None)


def uneven_batch_error(distribution):
    keras.distribution.set_distribution(distribution)
    try:
        model = tiny_model("3t")
        model.compile()
        model.fit(toy.toy_batch(10, image_size=16, seed=0), batch_size=10, verbose=0)
    except Exception as error:  # JAX's own error names the sizes
        return f"{type(error).__name__}: {error}"
    finally:
        keras.distribution.set_distribution(None)


def main():
    single_loss, single_weights = train(None)
    # The first step's loss, from the initial weights (fit's logs are taken
    # before the update): what the same weights give on one device's slice.
    keras.utils.set_random_seed(0)
    initial = tiny_model(third_towers=two_frozen_towers())
    slices = [{k: v[4 * i : 4 * i + 4] for k, v in BATCH.items()} for i in range(4)]
    per_device = float(np.mean([float(initial.compute_objective(s)["loss"]) for s in slices]))
    result = {
        "devices": len(jax.devices()),
        "single_loss": single_loss,
        "mean_of_per_device_losses": per_device,
    }
    device_mesh = keras.distribution.DeviceMesh((4,), ["batch"], devices=jax.devices())
    distribution = keras.distribution.DataParallel(device_mesh=device_mesh)
    # "accumulated": the global loss in two micro-batches of 8.
    for mode, (local_loss, accumulation_steps) in DATA_PARALLEL_MODES.items():
        first_fit_loss, weights = train(distribution, local_loss, accumulation_steps)
        result[mode] = {
            "first_fit_loss": first_fit_loss,
            "max_weight_difference": max(
                float(np.max(np.abs(a - b))) for a, b in zip(single_weights, weights)
            ),
        }
    result["uneven_batch_error"] = uneven_batch_error(distribution)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
