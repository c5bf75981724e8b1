"""The exported encoders in each runtime against Keras on each backend: agreement and speed.

    python benchmarks/export_speed.py --output runs/export_speed.json

Exports `--preset` (default `3t_tiny`, at `--alpha`, default 0.5: its two
paths) in the three formats with `keras-3t export`, then embeds the main
job's quick test scenes (200 uint8 images at the towers' size, and their
captions' token ids and padding masks) on six sides, each in a process of
its own:

- Keras: `model.encode_image` / `encode_text` on TensorFlow, JAX and
  PyTorch (`keras_tensorflow`, `keras_jax`, `keras_torch`);
- the runtimes: the SavedModel in TensorFlow (`tf_saved_model`, its
  `serve_tokens` signature: token ids, like the others), `onnxruntime` and
  `litert` (ai-edge-litert's interpreter, `num_threads` = cores).

Each side embeds the images, then the captions, in batches of
`--batch-size`: one untimed pass (tracing, compiling, allocating), then
`--repeats` timed passes; its speed is images (captions) per second over
the median pass. `--rounds` runs every side once per round, in an order
drawn afresh each round (`--seed`), and each ratio is the median over
rounds of the side's speed over `keras_tensorflow`'s in the same round, so
that it compares runs minutes apart at most. Agreement is the largest
absolute difference between a side's embeddings and each Keras backend's.
Prints a Markdown table and writes the JSON report (`--output`, never
overwritten).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SIDES = ("keras_tensorflow", "keras_jax", "keras_torch", "tf_saved_model", "onnxruntime", "litert")
BASELINE = "keras_tensorflow"
# The format each runtime side runs.
FORMATS = {"tf_saved_model": "tf_saved_model", "onnxruntime": "onnx", "litert": "litert"}


def encoders(side, folder, preset, alpha):
    """`(embed_images, embed_tokens)` of one side: NumPy batches in, NumPy out."""
    if side.startswith("keras_"):
        from keras_3t import presets

        model = presets.load(preset)
        return (
            lambda images: model.encode_image(images, alpha),
            lambda ids, mask: model.encode_text({"token_ids": ids, "padding_mask": mask}, alpha),
        )
    image_path, text_path = (os.path.join(folder, name) for name in _files(folder))
    if side == "tf_saved_model":
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  the text encoder's tokenizer ops

        image = tf.saved_model.load(image_path).signatures["serving_default"]
        text = tf.saved_model.load(text_path).signatures["serve_tokens"]
        return (
            lambda images: image(images=tf.constant(images))["embeddings"].numpy(),
            lambda ids, mask: text(token_ids=tf.constant(ids), padding_mask=tf.constant(mask))[
                "embeddings"
            ].numpy(),
        )
    if side == "onnxruntime":
        import onnxruntime

        image = onnxruntime.InferenceSession(image_path)
        text = onnxruntime.InferenceSession(text_path)
        return (
            lambda images: image.run(None, {"images": images})[0],
            lambda ids, mask: text.run(None, {"token_ids": ids, "padding_mask": mask})[0],
        )
    from ai_edge_litert.interpreter import Interpreter

    image = Interpreter(image_path, num_threads=os.cpu_count()).get_signature_runner()
    text = Interpreter(text_path, num_threads=os.cpu_count()).get_signature_runner()
    return (
        lambda images: image(images=images)["embeddings"],
        lambda ids, mask: text(token_ids=ids, padding_mask=mask)["embeddings"],
    )


def _files(folder):
    with open(os.path.join(folder, "export.json")) as file:
        manifest = json.load(file)
    return manifest["image_encoder"]["file"], manifest["text_encoder"]["file"]


def timed_passes(embed, arrays, batch_size, repeats):
    """One untimed pass over `arrays` in batches, then `repeats` timed ones.

    Returns:
        (the embeddings of the last pass, each timed pass's seconds).
    """

    def one_pass():
        batches = range(0, len(arrays[0]), batch_size)
        return np.concatenate([embed(*(a[i : i + batch_size] for a in arrays)) for i in batches])

    one_pass()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        embeddings = one_pass()
        seconds.append(time.perf_counter() - start)
    return embeddings, seconds


def run_side(args):
    """The `--side` child: times one side and writes its embeddings and times."""
    side = args.side
    with np.load(args.inputs) as inputs:
        images, ids, mask = (inputs[key] for key in ("images", "token_ids", "padding_mask"))
    folder = os.path.join(args.exports, FORMATS.get(side, ""))
    embed_images, embed_tokens = encoders(side, folder, args.preset, args.alpha)
    image_embeddings, image_seconds = timed_passes(
        embed_images, (images,), args.batch_size, args.repeats
    )
    text_embeddings, text_seconds = timed_passes(
        embed_tokens, (ids, mask), args.batch_size, args.repeats
    )
    np.savez(args.result + ".npz", images=image_embeddings, texts=text_embeddings)
    with open(args.result + ".json", "w") as file:
        json.dump({"image_seconds": image_seconds, "text_seconds": text_seconds}, file)


def prepare(preset, alpha, scratch):
    """Exports the three formats and writes the inputs; returns their paths."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from keras_3t import presets
    from keras_3t.demo import main_job

    exports = os.path.join(scratch, "exports")
    for format in sorted(set(FORMATS.values())):
        command = [sys.executable, "-m", "keras_3t", "export", preset]
        command += [os.path.join(exports, format), "--format", format, "--alpha", str(alpha)]
        subprocess.run(command, check=True, capture_output=True)
    model = presets.load(preset)
    retrieval = main_job.evaluation_tasks(model.preprocessor, main_job.BUDGETS["quick"], 0)
    retrieval = retrieval["retrieval"]
    inputs = os.path.join(scratch, "inputs.npz")
    np.savez(
        inputs,
        images=(np.asarray(retrieval["images"]) * 255).round().astype("uint8"),
        token_ids=np.asarray(retrieval["texts"]["token_ids"], "int32"),
        padding_mask=np.asarray(retrieval["texts"]["padding_mask"], bool),
    )
    return exports, inputs


def summarize(rounds, embeddings, count):
    """Per side: median speeds, median per-round ratios to the baseline, agreement.

    Args:
        rounds: a list, per round, of `{side: {"image_seconds", "text_seconds"}}`.
        embeddings: `{side: {"images", "texts"}}` arrays.
        count: `{"image": number of images, "text": number of captions}`.
    """
    summary = {}
    for side in rounds[0]:
        row = {}
        for kind in ("image", "text"):
            speeds = [count[kind] / np.median(r[side][f"{kind}_seconds"]) for r in rounds]
            baseline = [count[kind] / np.median(r[BASELINE][f"{kind}_seconds"]) for r in rounds]
            row[f"{kind}s_per_s"] = float(np.median(speeds))
            row[f"{kind}_over_{BASELINE}"] = float(np.median(np.divide(speeds, baseline)))
        row["max_abs_difference"] = {
            keras: max(
                float(np.abs(embeddings[side][key] - embeddings[keras][key]).max())
                for key in ("images", "texts")
            )
            for keras in embeddings
            if keras.startswith("keras_")
        }
        summary[side] = row
    return summary


def table(summary, command):
    lines = [
        f"`{command}`",
        "",
        "| side | images/s | × keras_tensorflow | captions/s | × keras_tensorflow "
        "| max abs difference to Keras (TF, JAX, PyTorch) |",
        "|---|---|---|---|---|---|",
    ]
    for side, row in summary.items():
        differences = row["max_abs_difference"]
        lines.append(
            f"| {side} | {row['images_per_s']:,.0f} | {row['image_over_keras_tensorflow']:.2f} "
            f"| {row['texts_per_s']:,.0f} | {row['text_over_keras_tensorflow']:.2f} | "
            + ", ".join(f"{differences[k]:.1e}" for k in sorted(differences, key=SIDES.index))
            + " |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="3t_tiny")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="JSON file to write (refuses to overwrite one)")
    for hidden in ("--side", "--exports", "--inputs", "--result"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        return run_side(args)
    if args.output and os.path.exists(args.output):
        parser.error(f"{args.output} exists; choose another --output (nothing was overwritten).")
    if BASELINE not in args.sides:
        parser.error(f"--sides must include the baseline, {BASELINE}.")
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="export-speed-") as scratch:
        exports, inputs = prepare(args.preset, args.alpha, scratch)
        rounds, embeddings = [], {}
        for round_index in range(args.rounds):
            times = {}
            for side in rng.permutation(args.sides):
                result = os.path.join(scratch, f"{side}_{round_index}")
                environment = dict(os.environ)
                if side.startswith("keras_"):
                    environment["KERAS_BACKEND"] = side.removeprefix("keras_")
                command = [sys.executable, __file__, "--side", side, "--exports", exports]
                command += ["--inputs", inputs, "--result", result, "--preset", args.preset]
                command += ["--alpha", str(args.alpha), "--batch-size", str(args.batch_size)]
                command += ["--repeats", str(args.repeats)]
                child = subprocess.run(command, env=environment, capture_output=True, text=True)
                if child.returncode:
                    sys.exit(f"{side} failed:\n{child.stderr[-3000:]}")
                with open(result + ".json") as file:
                    times[side] = json.load(file)
                if round_index == 0:
                    with np.load(result + ".npz") as arrays:
                        embeddings[side] = dict(arrays)
            rounds.append({side: times[side] for side in args.sides})
        with np.load(inputs) as arrays:
            count = {"image": len(arrays["images"]), "text": len(arrays["token_ids"])}
    summary = summarize(rounds, embeddings, count)
    command = "python benchmarks/export_speed.py " + " ".join(argv or sys.argv[1:])
    print(table(summary, command.strip()))
    report = {
        "arguments": vars(args),
        "machine": {"cores": os.cpu_count()},
        "count": count,
        "summary": summary,
        "rounds": rounds,
    }
    if args.output:
        with open(args.output, "w") as file:
            json.dump(report, file, indent=2)
    return report


if __name__ == "__main__":
    main()
