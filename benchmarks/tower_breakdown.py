"""Where a CLIP training step's time goes: each tower's forward and backward pass.

    python benchmarks/tower_breakdown.py --sizes tiny small --torch-operators 12 \\
        --output runs/tower_breakdown.json

`benchmarks/train_step.py` times whole steps; when one backend is slower
than another on the same model, this script says in which tower and in which
direction. For each size (the configs of `benchmarks/train_step.py`) it
starts one process per backend and times, on one random batch:

- `image_forward` / `text_forward`: the tower's forward pass in training
  mode, to a scalar (the sum of the squared embeddings); on PyTorch it
  records what the backward pass needs, as a training step's does;
- `image_forward_backward` / `text_forward_backward`: the same and the
  gradients of every trainable weight of the tower;
- `clip_step`: the whole CLIP training step as `fit` takes it (the step of
  `benchmarks/train_step.py`).

Each part is compiled as the training step is: XLA on TensorFlow
(`tf.function(jit_compile=True)`) and on JAX (`jax.jit`), eager on PyTorch.
The processes are timed in lockstep, as `benchmarks/train_step.py` times
them: each round runs every part once in one process, then in the next,
the processes in a fresh random order (`--seed`), so that the backends are
compared on rounds taken moments apart. `backward = forward_backward -
forward` is derived. `--torch-operators N` also profiles the PyTorch CLIP
steps (`torch.profiler`) and prints the N operators with the most self
time. Prints a table of the medians (ms); `--output` writes them as JSON.
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # noqa: E402 (the sibling script: same models, batch and step)

PARTS = (
    "image_forward",
    "image_forward_backward",
    "text_forward",
    "text_forward_backward",
    "clip_step",
)


def compiled_parts(tower, call, inputs):
    """The tower's forward and forward + backward functions, as the backend runs a step.

    Args:
        tower: a built tower layer.
        call: function of (tower, inputs) returning the embeddings.
        inputs: the tower's inputs (tensors).

    Returns:
        (forward, forward_backward): functions of no arguments that return
        once the computation has finished.
    """
    import keras

    variables = tower.trainable_variables

    def loss_of(inputs):
        return keras.ops.sum(keras.ops.square(call(tower, inputs)))

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        frozen = tower.non_trainable_variables

        def stateless_loss(values, frozen_values, inputs):
            mapping = list(zip(variables, values)) + list(zip(frozen, frozen_values))
            with keras.StatelessScope(state_mapping=mapping):
                return loss_of(inputs)

        def current_values():
            # Read at each call: the training step donates the old buffers.
            return [v.value for v in variables], [v.value for v in frozen]

        jitted_forward = jax.jit(stateless_loss)
        jitted_forward_backward = jax.jit(jax.value_and_grad(stateless_loss))
        return (
            lambda: jax.block_until_ready(jitted_forward(*current_values(), inputs)),
            lambda: jax.block_until_ready(jitted_forward_backward(*current_values(), inputs)),
        )
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def forward():
            return loss_of(inputs)

        @tf.function(jit_compile=True)
        def forward_backward():
            with tf.GradientTape() as tape:
                loss = loss_of(inputs)
            gradients = tape.gradient(loss, variables)
            _check_gradients(gradients, variables)
            return loss, gradients

        return (lambda: forward().numpy(), lambda: forward_backward()[0].numpy())
    import torch

    tensors = [v.value for v in variables]

    def torch_forward_backward():
        gradients = torch.autograd.grad(loss_of(inputs), tensors, allow_unused=True)
        _check_gradients(gradients, variables)

    return (lambda: loss_of(inputs).item(), torch_forward_backward)


def _check_gradients(gradients, variables):
    # A weight without a gradient would make the backward pass look cheaper
    # than the training step's.
    missing = [v.path for g, v in zip(gradients, variables) if g is None]
    if missing:
        raise RuntimeError(f"No gradient reached these weights: {missing}.")


def build_parts(size, args):
    """The timed functions of one size, each part's compiled and warmed up."""
    import keras

    config = train_step.load_config(size)
    keras.utils.set_random_seed(0)
    model = train_step.build_model(config, "clip")
    batch = train_step.make_batch(config, args.batch, model, cached=False)
    tensors = {key: keras.ops.convert_to_tensor(value) for key, value in batch.items()}
    image_forward, image_forward_backward = compiled_parts(
        model.image_tower,
        lambda tower, images: tower(images, training=True)["embedding"],
        tensors["images"],
    )
    text_forward, text_forward_backward = compiled_parts(
        model.text_tower,
        lambda tower, text: tower(text, training=True)["embedding"],
        {key: tensors[key] for key in ("token_ids", "padding_mask")},
    )
    model.compile(
        optimizer=train_step.benchmark_optimizer(),
        jit_compile=train_step.resolve_jit("fastest"),
    )
    functions = {
        "image_forward": image_forward,
        "image_forward_backward": image_forward_backward,
        "text_forward": text_forward,
        "text_forward_backward": text_forward_backward,
        "clip_step": train_step.train_step_function(model, batch),
    }
    for function in functions.values():
        for _ in range(args.warmup):
            function()
    return functions


def run_worker(args):
    """One backend's process: one round of every part per "step" line on stdin.

    Prints the medians (ms), and on PyTorch the operator table, as one JSON
    line when its input closes.
    """
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(args.threads)
    functions = build_parts(args.size, args)
    times = {part: [] for part in PARTS}

    def run_round():
        for part in PARTS:
            times[part].append(train_step.timed_turn(functions[part], 1))

    train_step.serve_rounds(run_round)
    result = summarize(times, args)
    if args.torch_operators and keras.backend.backend() == "torch":
        # Profiled after the timed rounds: the profiler does not slow them.
        result["torch_operators"] = torch_operator_table(
            functions["clip_step"], args.steps, args.torch_operators
        )
    print(json.dumps(result), flush=True)


def summarize(times, args):
    """Median milliseconds of each part; each backward pass derived."""
    import keras

    medians = {part: 1e3 * statistics.median(values) for part, values in times.items()}
    for tower in ("image", "text"):
        medians[f"{tower}_backward"] = (
            medians[f"{tower}_forward_backward"] - medians[f"{tower}_forward"]
        )
    return {
        "backend": keras.backend.backend(),
        "size": args.size,
        "batch": args.batch,
        "rounds": len(times[PARTS[0]]),
        "median_ms": {name: round(value, 2) for name, value in medians.items()},
        "versions": {"keras": keras.__version__, "backend": train_step.backend_version()},
    }


def torch_operator_table(step, steps, rows):
    """torch.profiler's operators of `steps` calls of `step`, by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def print_table(results):
    columns = ("image_forward", "image_backward", "text_forward", "text_backward", "clip_step")
    print("| size | backend | " + " | ".join(f"{c} (ms)" for c in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for result in results:
        cells = " | ".join(f"{result['median_ms'][c]:.1f}" for c in columns)
        print(f"| {result['size']} | {result['backend']} | {cells} |")


def worker_command(args, size):
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--size",
        size,
        "--batch",
        str(args.batch),
        "--threads",
        str(args.threads),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--torch-operators",
        str(args.torch_operators),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"])
    parser.add_argument(
        "--backends", nargs="+", default=list(train_step.BACKENDS), choices=train_step.BACKENDS
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed rounds")
    parser.add_argument(
        "--seed", type=int, default=0, help="of the order of the backends in each round"
    )
    parser.add_argument(
        "--torch-operators",
        type=int,
        default=0,
        metavar="N",
        help="also profile the PyTorch CLIP steps and print the N operators with the most self time",
    )
    parser.add_argument("--output", help="JSON file to write (refuses to overwrite one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    for size in args.sizes:
        train_step.load_config(size)
    if args.output and os.path.exists(args.output):
        raise SystemExit(
            f"{args.output} exists; choose another --output (nothing was overwritten)."
        )
    results = []
    for size in args.sizes:
        workers = [
            train_step.LockstepWorker(
                backend,
                worker_command(args, size),
                train_step.worker_environment(backend, args.threads),
            )
            for backend in args.backends
        ]
        for lines in train_step.run_lockstep(workers, args.steps, args.seed).values():
            results += lines
    for result in results:
        if "torch_operators" in result:
            print(
                f"PyTorch operators of {args.steps} CLIP steps at {result['size']}:\n{result['torch_operators']}"
            )
    print_table(results)
    if args.output:
        with open(args.output, "w") as file:
            json.dump(
                {"arguments": vars(args), "machine": train_step.machine(), "results": results},
                file,
                indent=1,
            )


if __name__ == "__main__":
    main()
