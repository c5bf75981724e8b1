"""Memory of the global and the local contrastive loss under JAX data parallelism.

    KERAS_BACKEND=jax python benchmarks/local_loss_memory.py --devices 4 --batch 4096

Compiles the value and gradient of each loss on a global batch sharded over
simulated CPU devices (`keras.distribution.DataParallel`) and prints the
temporary memory XLA allocates for the program, global and local, with the
ratio. On TensorFlow and PyTorch the local loss's saving holds by
construction (each replica forms `rows × global batch` logits instead of
`global batch²`); on JAX, XLA partitions the global loss itself, and this
script measures what the local formulation changes there.
"""

import argparse
import json
import os
import sys

if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arguments.add_argument("--devices", type=int, default=4)
    arguments.add_argument("--batch", type=int, default=4096)
    arguments.add_argument("--dim", type=int, default=64)
    args = arguments.parse_args()
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.losses import contrastive_loss  # noqa: E402
from keras_3t.losses import l2_normalize  # noqa: E402
from keras_3t.losses import sigmoid_contrastive_loss  # noqa: E402

LOSSES = {
    "softmax": lambda a, b, local: contrastive_loss(a, b, 10.0, local=local),
    "sigmoid": lambda a, b, local: sigmoid_contrastive_loss(a, b, 10.0, -5.0, local=local),
}


def main(devices, batch, dim):
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    keras.distribution.set_distribution(distribution)
    sharding = distribution.get_data_layout((batch, dim)).backend_layout
    rng = np.random.default_rng(0)
    a, b = (
        jax.device_put(rng.normal(size=(batch, dim)).astype("float32"), sharding) for _ in range(2)
    )
    rows = []
    for name, loss in LOSSES.items():
        memory = {}
        for local in (False, True):

            def objective(a, b):
                return loss(l2_normalize(a), l2_normalize(b), local)

            step = jax.jit(jax.value_and_grad(objective, argnums=(0, 1)))
            compiled = step.lower(a, b).compile()
            memory["local" if local else "global"] = compiled.memory_analysis().temp_size_in_bytes
        rows.append(
            {
                "loss": name,
                "devices": devices,
                "batch": batch,
                "global_temp_mib": memory["global"] / 2**20,
                "local_temp_mib": memory["local"] / 2**20,
                "local_over_global": memory["local"] / memory["global"],
            }
        )
    print(
        f"{'loss':8} {'devices':>7} {'batch':>6} {'global MiB':>10} {'local MiB':>10} {'local/global':>12}"
    )
    for row in rows:
        print(
            f"{row['loss']:8} {row['devices']:7d} {row['batch']:6d} {row['global_temp_mib']:10.1f} "
            f"{row['local_temp_mib']:10.1f} {row['local_over_global']:12.2f}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main(args.devices, args.batch, args.dim)
