"""One AdamW update of a model's weights: keras-3t's vs Keras's (and torch's).

    KERAS_BACKEND=torch OMP_NUM_THREADS=2 python benchmarks/optimizer_step.py \\
        --size vitb16_64px --steps 10

Builds the CLIP model of a benchmarks/configs size (as benchmarks/train_step.py
does), gives every trainable weight a fixed random gradient, and times
`optimizer.apply` for `keras_3t.optimization.AdamW` and
`keras.optimizers.AdamW` (same arguments, weight decay on rank >= 2 weights),
plus, on PyTorch, `keras_3t.optimization.AdamW(fused=True)` and
`torch.optim.AdamW` with `foreach=True` and `fused=True` on copies of the same
tensors (open_clip's optimizer). The updates are timed
round-robin in one process (median of `--steps` each, after one untimed
update); ratios are against Keras's AdamW. Prints a table, writes JSON with
`--output`.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import train_step  # noqa: E402

from keras_3t.optimization import AdamW  # noqa: E402


def keras_update(optimizer_class, model, gradients):
    variables = [keras.Variable(w.value) for w in model.trainable_weights]
    optimizer = optimizer_class(
        learning_rate=train_step.LEARNING_RATE,
        weight_decay=train_step.WEIGHT_DECAY,
        beta_2=train_step.BETA_2,
        epsilon=train_step.EPSILON,
    )
    optimizer.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) < 2])
    optimizer.build(variables)

    def update():
        optimizer.apply(gradients, variables)
        keras.ops.convert_to_numpy(variables[0])  # waits for the update

    return update


def torch_update(model, gradients, implementation):
    import torch

    parameters = [torch.nn.Parameter(w.value.detach().clone()) for w in model.trainable_weights]
    groups = [
        {"params": [p for p in parameters if p.ndim >= 2], "weight_decay": train_step.WEIGHT_DECAY},
        {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=train_step.LEARNING_RATE,
        betas=(0.9, train_step.BETA_2),
        eps=train_step.EPSILON,
        **{implementation: True},
    )
    for parameter, gradient in zip(parameters, gradients):
        parameter.grad = gradient

    def update():
        optimizer.step()

    return update


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="vitb16_64px")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output", help="JSON file to write (refuses to overwrite one)")
    args = parser.parse_args()
    if args.output and os.path.exists(args.output):
        raise SystemExit(
            f"{args.output} exists; choose another --output (nothing was overwritten)."
        )
    backend = keras.backend.backend()
    model = train_step.build_model(train_step.load_config(args.size), "clip")
    rng = np.random.default_rng(0)
    gradients = [
        keras.ops.convert_to_tensor(rng.normal(size=w.shape).astype("float32") * 1e-3)
        for w in model.trainable_weights
    ]
    updates = {
        "keras.optimizers.AdamW": keras_update(keras.optimizers.AdamW, model, gradients),
        "keras_3t.optimization.AdamW": keras_update(AdamW, model, gradients),
    }
    if backend == "torch":
        updates["keras_3t.optimization.AdamW(fused=True)"] = keras_update(
            lambda **kwargs: AdamW(fused=True, **kwargs), model, gradients
        )
        for implementation in ("foreach", "fused"):
            updates[f"torch.optim.AdamW({implementation}=True)"] = torch_update(
                model, gradients, implementation
            )
    for update in updates.values():
        update()
    times = {name: [] for name in updates}
    for _ in range(args.steps):
        for name, update in updates.items():
            started = time.perf_counter()
            update()
            times[name].append(time.perf_counter() - started)
    baseline = statistics.median(times["keras.optimizers.AdamW"])
    parameters = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    print(
        f"{backend}, {args.size}: {parameters:,} trainable parameters in "
        f"{len(model.trainable_weights)} weights"
    )
    results = []
    for name, measured in times.items():
        median = statistics.median(measured)
        results.append(
            {
                "optimizer": name,
                "median_s": median,
                "times_s": measured,
                "over_keras_adamw": median / baseline,
            }
        )
        print(f"{name:<34} {1000 * median:9.1f} ms  {median / baseline:6.3f} x Keras's AdamW")
    if args.output:
        with open(args.output, "w") as file:
            json.dump(
                {
                    "backend": backend,
                    "size": args.size,
                    "parameters": parameters,
                    "steps": args.steps,
                    "results": results,
                },
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
