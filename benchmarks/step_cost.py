"""FLOPs and memory of one training step at the paper's sizes, from XLA's cost analysis.

    KERAS_BACKEND=jax python benchmarks/step_cost.py \\
        --presets 3t_vitb16 lit_vitb16 clip_vitb16 --batch-size 256 4096

For each preset (default: every `*_vitb16` one), built with fresh weights and
no download, and each global batch size (default 256), the script lowers and
compiles the training step that `fit` takes on JAX (`jax.jit(model.train_step,
donate_argnums=0)`, as Keras's `JAXTrainer.make_train_function` jits it) on
abstract inputs (`jax.ShapeDtypeStruct`) and never runs it: nothing the
size of a batch, nor AdamW's slots, is allocated, only the model's weights.
It reports, from the compiled program:

- FLOPs per step and per example: XLA's `cost_analysis()["flops"]`, counted
  on the compiled program (a matmul counts 2·M·N·K, an elementwise op one
  per element; transcendentals are counted apart and left out), not a hand
  count;
- XLA's `memory_analysis()`: the argument, output, aliased (arguments
  donated to outputs: the state) and temporary bytes of the program's buffer
  assignment, and their total, argument + output − aliased + temporary;
- parameters, trainable and frozen (`keras_3t.presets.parameter_counts`);
- each step's FLOPs over CLIP's at the same size and batch (`× CLIP`);
- the seconds `lower().compile()` took;
- each tower's inference forward pass (`model.image_tower`,
  `model.text_tower`, the third tower's `features`), FLOPs per example.

3T presets get two rows: `live` (the frozen third tower runs in the step)
and `cached`, the step on a batch that carries `"third_features"` (as
`keras_3t.data.make_dataset` adds them from a third-tower cache), which the
model takes instead of running the frozen backbone.

The numbers describe the program XLA compiles for this machine's platform
(`platform` in the JSON; XLA:CPU on a machine without an accelerator), at
the default float32 policy. Another platform's compiler fuses, rematerialises
and lays out buffers differently, so its memory differs; the matmul FLOPs,
nearly all of a step, are the same. Prints Markdown tables, then every row
as one JSON line.
"""

import argparse
import gc
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import keras  # noqa: E402

import keras_3t  # noqa: E402

PAPER_SIZE = "_vitb16"
GIB = 2**30


def build_model(name):
    """The preset with fresh weights, compiled, its optimizer built as `fit` builds it."""
    model = keras_3t.presets.load(
        name, weights=False, third_tower_weights=False, preprocessor=False
    )
    # Variables created in a stateless scope are deferred, never allocated:
    # the step is compiled, not run, and needs only AdamW's slot shapes.
    with keras.StatelessScope():
        model.optimizer.build(model.trainable_variables)
    return model


def abstract(variables):
    return [jax.ShapeDtypeStruct(tuple(v.shape), v.dtype) for v in variables]


def abstract_batch(model, batch_size, cached):
    """A training batch's shapes and dtypes, as `fit` hands it to the step."""
    height, width = model.image_converter.image_size
    length = model.text_tower.sequence_length
    batch = {
        "images": jax.ShapeDtypeStruct(
            (batch_size, height, width, model.image_converter.channels), "float32"
        ),
        "token_ids": jax.ShapeDtypeStruct((batch_size, length), "int32"),
        "padding_mask": jax.ShapeDtypeStruct((batch_size, length), "bool"),
    }
    if cached:
        batch["third_features"] = jax.ShapeDtypeStruct(
            (batch_size, model.third_tower.feature_dim), "float32"
        )
    return batch


def compiled_train_step(model, batch_size, cached):
    """The step `fit` takes, lowered and compiled on abstract state and batch."""
    state = tuple(
        abstract(variables)
        for variables in (
            model.trainable_variables,
            model.non_trainable_variables,
            model.optimizer.variables,
            model.metrics_variables,
        )
    )
    step = jax.jit(model.train_step, donate_argnums=0)
    return step.lower(state, abstract_batch(model, batch_size, cached)).compile()


def forward_flops_per_example(model, batch_size):
    """Each tower's inference forward pass, FLOPs per example."""
    batch = abstract_batch(model, batch_size, cached=False)
    images = batch["images"]
    text = {key: batch[key] for key in ("token_ids", "padding_mask")}
    towers = {
        "image": (lambda x: model.image_tower(x, training=False)["embedding"], images),
        "text": (lambda x: model.text_tower(x, training=False)["embedding"], text),
    }
    if model.third_tower is not None:
        towers["third"] = (model.third_tower.features, images)
    variables = model.trainable_variables + model.non_trainable_variables
    flops = {}
    for tower, (forward, inputs) in towers.items():

        def stateless_forward(values, inputs, forward=forward):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return forward(inputs)

        compiled = jax.jit(stateless_forward).lower(abstract(variables), inputs).compile()
        flops[tower] = compiled.cost_analysis()["flops"] / batch_size
    return flops


def measure_preset(name, batch_sizes):
    """The preset's step rows (one per batch size and step) and its towers' forward FLOPs."""
    model = build_model(name)
    counts = keras_3t.presets.parameter_counts(model)
    steps = ("live", "cached") if model.third_tower is not None else ("live",)
    rows = []
    for batch_size in batch_sizes:
        for step in steps:
            started = time.perf_counter()
            compiled = compiled_train_step(model, batch_size, cached=step == "cached")
            compile_s = time.perf_counter() - started
            flops = compiled.cost_analysis()["flops"]
            memory = compiled.memory_analysis()
            rows.append(
                {
                    "preset": name,
                    "step": step,
                    "batch_size": batch_size,
                    "step_flops": flops,
                    "flops_per_example": flops / batch_size,
                    "trainable_params": counts["trainable"],
                    "frozen_params": counts["total"] - counts["trainable"],
                    "argument_bytes": memory.argument_size_in_bytes,
                    "output_bytes": memory.output_size_in_bytes,
                    "alias_bytes": memory.alias_size_in_bytes,
                    "temp_bytes": memory.temp_size_in_bytes,
                    "generated_code_bytes": memory.generated_code_size_in_bytes,
                    "total_bytes": (
                        memory.argument_size_in_bytes
                        + memory.output_size_in_bytes
                        - memory.alias_size_in_bytes
                        + memory.temp_size_in_bytes
                    ),
                    "compile_s": compile_s,
                }
            )
    # Per example the forward passes do not depend on the batch size: one
    # compile, at the smallest.
    return rows, forward_flops_per_example(model, min(batch_sizes))


def add_ratios_to_clip(rows):
    """`flops_over_clip`: a step's FLOPs over CLIP's at the same size and batch."""
    clip = {
        (row["preset"].split("_", 1)[1], row["batch_size"]): row["step_flops"]
        for row in rows
        if row["preset"].startswith("clip_")
    }
    for row in rows:
        reference = clip.get((row["preset"].split("_", 1)[1], row["batch_size"]))
        row["flops_over_clip"] = None if reference is None else row["step_flops"] / reference


def number(value):
    """Three significant digits, without exponents."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def markdown_tables(rows, forward_flops):
    step_table = [
        "| preset | step | batch | TFLOPs/step | GFLOPs/example | × CLIP | trainable M "
        "| frozen M | argument GiB | output GiB | aliased GiB | temp GiB | total GiB | compile s |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        ratio = "–" if row["flops_over_clip"] is None else f"{row['flops_over_clip']:.3f}"
        memory = " | ".join(
            number(row[key] / GIB)
            for key in (
                "argument_bytes",
                "output_bytes",
                "alias_bytes",
                "temp_bytes",
                "total_bytes",
            )
        )
        step_table.append(
            f"| {row['preset']} | {row['step']} | {row['batch_size']} "
            f"| {number(row['step_flops'] / 1e12)} | {number(row['flops_per_example'] / 1e9)} "
            f"| {ratio} | {row['trainable_params'] / 1e6:.1f} | {row['frozen_params'] / 1e6:.1f} "
            f"| {memory} | {row['compile_s']:.0f} |"
        )
    forward_table = [
        "| preset | image forward GFLOPs/example | text forward | third forward |",
        "|---|--:|--:|--:|",
    ]
    for preset, forward in forward_flops.items():
        cells = (forward.get(tower) for tower in ("image", "text", "third"))
        forward_table.append(
            f"| {preset} | "
            + " | ".join("–" if flops is None else number(flops / 1e9) for flops in cells)
            + " |"
        )
    return "\n".join(step_table) + "\n\n" + "\n".join(forward_table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--presets",
        nargs="+",
        default=[name for name in keras_3t.presets.names() if name.endswith(PAPER_SIZE)],
    )
    parser.add_argument("--batch-size", nargs="+", type=int, default=[256])
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        raise SystemExit("step_cost.py compiles JAX programs: run it with KERAS_BACKEND=jax.")
    rows, forward_flops = [], {}
    for name in args.presets:
        preset_rows, forward_flops[name] = measure_preset(name, args.batch_size)
        rows.extend(preset_rows)
        # One model in memory at a time.
        keras.backend.clear_session()
        gc.collect()
    add_ratios_to_clip(rows)
    print(markdown_tables(rows, forward_flops))
    print(
        json.dumps(
            {
                "jax": jax.__version__,
                "keras": keras.__version__,
                "platform": jax.devices()[0].platform,
                "rows": rows,
                "forward_flops_per_example": forward_flops,
            }
        )
    )


if __name__ == "__main__":
    main()
