"""Run by tests/distributed/test_distributed.py as two processes of a torch.distributed group.

    python tests/distributed/torch_check.py RANK WORLD_SIZE PORT

Each process first computes single-device references on the whole global
batch, then joins a gloo process group on 127.0.0.1 and repeats the work on
its slice: the pair losses and their gradients (global and local), hard
cross-device negatives, and three `fit` steps of a 3T model that starts from
different weights on each process (global loss, local loss, and the global
loss with gradient accumulation). Prints one JSON line.
"""

import json
import os
import sys

if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "torch"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402

BATCH = 16


def max_difference(xs, ys):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(xs, ys))


def pair_losses(replicas=None, rank=0, world=1):
    """Each loss's value and gradients w.r.t. the embeddings, scale and bias."""
    import torch

    from keras_3t.losses import contrastive_loss
    from keras_3t.losses import l2_normalize
    from keras_3t.losses import sigmoid_contrastive_loss

    rng = np.random.default_rng(0)
    a0, b0 = rng.normal(size=(2, BATCH, 8)).astype("float32")
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    results = {}
    for local in (False, True):
        for name in ("softmax", "sigmoid"):
            a, b = (torch.tensor(v[rows], requires_grad=True) for v in (a0, b0))
            scale, bias = (torch.tensor(v, requires_grad=True) for v in (10.0, -5.0))
            if name == "softmax":
                value = contrastive_loss(
                    l2_normalize(a), l2_normalize(b), scale, replicas=replicas, local=local
                )
            else:
                value = sigmoid_contrastive_loss(
                    l2_normalize(a), l2_normalize(b), scale, bias, replicas=replicas, local=local
                )
            (value / world).backward()
            shared = [value.detach() / world, scale.grad] + (
                [bias.grad] if name == "sigmoid" else []
            )
            if replicas is not None:
                # As the train step does: the processes' values average to
                # the loss, and their gradients of shared weights add up.
                for tensor in shared:
                    torch.distributed.all_reduce(tensor)
            results[f"{name}_{'local' if local else 'global'}"] = (
                float(shared[0]),
                [g.numpy() for g in [a.grad, b.grad] + shared[1:]],
            )
    return results


def hard_negatives(replicas=None, rank=0, world=1, local=False):
    """Rows r and r + 8 are identical: only cross-process negatives are hard."""
    from keras_3t.losses import contrastive_loss

    a = np.concatenate([np.eye(8, dtype="float32")[:4]] * 2 * (BATCH // 8))
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    return float(contrastive_loss(a[rows], a[rows], 20.0, replicas=replicas, local=local))


def train(seed, rows, local=False, accumulation_steps=1):
    import keras

    from keras_3t.demo import toy
    from tests.helpers import tiny_model
    from tests.helpers import two_frozen_towers

    keras.utils.set_random_seed(seed)
    model = tiny_model(third_towers=two_frozen_towers(), local_loss=local)
    # SGD: see tests/distributed/tf_check.py (Adam would magnify float32
    # reduction noise in gradient entries that are exactly zero).
    model.compile(optimizer=keras.optimizers.SGD(0.1), accumulation_steps=accumulation_steps)
    batch = {k: v[rows] for k, v in toy.toy_batch(BATCH, image_size=16, seed=0).items()}
    history = model.fit(batch, batch_size=len(batch["images"]), epochs=3, shuffle=False, verbose=0)
    return history.history["loss"], [np.asarray(w) for w in model.get_weights()]


def main(rank, world, port):
    import torch.distributed as dist

    from keras_3t import distributed
    from keras_3t.demo import toy
    from tests.helpers import DATA_PARALLEL_MODES
    from tests.helpers import tiny_model

    single_losses = pair_losses()
    single_hard = hard_negatives()
    per_device_hard = float(np.mean([hard_negatives(rank=r, world=world) for r in range(world)]))
    single_history, single_weights = train(seed=0, rows=slice(None))

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    replicas = distributed.replicas()
    parallel_losses = pair_losses(replicas, rank, world)
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    result = {
        "rank": rank,
        "replicas": replicas.count,
        "pair_losses": {
            key: {
                "single": single_losses[key][0],
                "parallel": value,
                # Each process holds only its rows' gradient: compare those.
                "max_gradient_difference": max_difference(
                    [grads[0], grads[1]] + grads[2:],
                    [single_losses[key][1][0][rows], single_losses[key][1][1][rows]]
                    + single_losses[key][1][2:],
                ),
            }
            for key, (value, grads) in parallel_losses.items()
        },
        "hard_negatives": {
            "single": single_hard,
            "mean_of_per_device": per_device_hard,
            "global": hard_negatives(replicas, rank, world),
            "local": hard_negatives(replicas, rank, world, local=True),
        },
    }
    # "accumulated": each process's 8 rows in two micro-batches of 4.
    for mode, (local_loss, accumulation_steps) in DATA_PARALLEL_MODES.items():
        # Process r starts from seed r: the first step broadcasts process 0's.
        history, weights = train(
            seed=rank, rows=rows, local=local_loss, accumulation_steps=accumulation_steps
        )
        result[mode] = {
            "single_losses": single_history,
            "parallel_losses": history,
            "max_weight_difference": max_difference(weights, single_weights),
        }
    # Processes with batches of 4 and 5 examples.
    uneven = {k: v[: 4 + rank] for k, v in toy.toy_batch(8, image_size=16, seed=0).items()}
    model = tiny_model("3t")
    model.compile()
    try:
        model.fit(uneven, batch_size=4 + rank, epochs=1, verbose=0)
        result["uneven_batch_error"] = None
    except ValueError as error:
        result["uneven_batch_error"] = str(error)
    dist.destroy_process_group()
    print(json.dumps(result))


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:4]))
