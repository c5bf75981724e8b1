"""Where a live third tower's cost goes in a PyTorch training step.

    KERAS_BACKEND=torch OMP_NUM_THREADS=2 python benchmarks/third_tower_cost.py \\
        --size small --steps 10

The 3T target is a step no slower than CLIP's plus one forward pass of the
frozen third tower. `ThreeTowerModel.embed_batch` runs the third tower
before the trainable towers (docs/benchmarks.md compares the other order,
timed by commit 0702b2b's version of this script as `3t_third_first`). On PyTorch (eager, so parts of a step can be timed; on
TensorFlow and JAX the step is one compiled function) this times, in one
process with the steps interleaved round-robin:

- `clip`: the CLIP step of the same towers;
- `3t`: the 3T step, the third tower run live;
- `3t_no_grad`: the same, with the frozen backbone also under
  `torch.no_grad()` (tells whether autograd bookkeeping is the gap);
- `third_forward`: the third tower's forward pass alone, under
  `torch.no_grad()`;
- `third_inside_3t`: the third tower's forward pass timed inside the `3t`
  steps.

Prints the medians (ms) and `clip + third_forward` as JSON. Sizes are the
configs of `benchmarks/train_step.py`.
"""

import argparse
import json
import os
import statistics
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import keras

    if keras.backend.backend() != "torch":
        raise SystemExit(
            "third_tower_cost.py times parts of an eager step: run it with KERAS_BACKEND=torch."
        )
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_step

    torch.set_num_threads(args.threads)
    config = train_step.load_config(args.size)
    keras.utils.set_random_seed(0)
    clip = train_step.build_model(config, "clip")
    three_towers = train_step.build_model(config, "3t")
    for model in (clip, three_towers):
        model.compile(learning_rate=train_step.LEARNING_RATE, weight_decay=train_step.WEIGHT_DECAY)
    batch = train_step.make_batch(config, args.batch, three_towers, cached=False)

    tower = three_towers.third_tower
    features = tower.features
    inside = []

    def timed_features(images, training=None):
        started = time.perf_counter()
        result = features(images, training=training)
        inside.append(time.perf_counter() - started)
        return result

    def no_grad_features(images, training=None):
        with torch.no_grad():
            return features(images, training=training)

    three_towers_step = train_step.train_step_function(three_towers, batch)

    def variant(features_function):
        def step():
            tower.features = features_function
            try:
                return three_towers_step()
            finally:
                tower.features = features

        return step

    steps = {
        "clip": train_step.train_step_function(
            clip, train_step.make_batch(config, args.batch, clip, False)
        ),
        "3t": variant(timed_features),
        "3t_no_grad": variant(no_grad_features),
        "third_forward": train_step.third_forward_function(three_towers, batch),
    }
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    inside.clear()
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    medians = {name: 1000 * statistics.median(values) for name, values in times.items()}
    medians["third_inside_3t"] = 1000 * statistics.median(inside)
    medians["clip + third_forward"] = medians["clip"] + medians["third_forward"]
    print(
        json.dumps(
            {
                "size": args.size,
                "batch": args.batch,
                "threads": args.threads,
                "steps": args.steps,
                "torch": torch.__version__,
                "median_ms": {name: round(value, 1) for name, value in medians.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
