"""The main job: CLIP vs LiT vs 3T on the embedded handwritten-digit scenes.

    python -m keras_3t demo [--regime web|clean] [--mismatched] [--quick]
                            [--seed 0] [--output DIR] [--overwrite]
                            [--save-presets DIR]

Trains CLIP (both towers from scratch), LiT (the shipped pretrained digit
classifier frozen as the image tower) and 3T (towers from scratch plus that
classifier as the frozen third tower) with the same data, steps, batch size
and seed, and the same order of batches; with `--mismatched`, LiT and 3T
again with the shipped stroke thickness classifier. Then it evaluates each
on held-out test scenes (exact captions): zero-shot digit classification
and image↔text retrieval, plus 3T's α sweep on the test scenes and on the
validation scenes, where each metric's α is chosen; it prints the table,
and writes `results.json`,
`training_curves.png` and `alpha_sweep.png` to the output folder. With
`--save-presets DIR` it also saves the three trained models as presets
(`DIR/clip_tiny`, `DIR/lit_tiny`, `DIR/3t_tiny`), which is how the shipped
`saved_models/*_tiny` were made.
"""

import json
import os
import sys
import time

import keras
import numpy as np

from keras_3t.demo import digit_scenes
from keras_3t.demo.demo_arguments import parse_args
from keras_3t.demo.digit_models import build_digit_model
from keras_3t.demo.digit_models import load_third_tower_backbone
from keras_3t.evaluation import alpha_sweep
from keras_3t.evaluation import evaluate_model
from keras_3t.evaluation import plot_alpha_sweep
from keras_3t.extras import require
from keras_3t.preprocessing import ThreeTowerPreprocessor
from keras_3t.preprocessing import caption_tokenizer
from keras_3t.preprocessing import caption_vocabulary
from keras_3t.presets import parameter_counts

# Budgets: the default fits in 10 minutes on 2 CPU cores; --quick in ~1.
BUDGETS = {
    "default": dict(train_scenes=8192, steps=400, batch_size=128, test_scenes=1000, epochs=8),
    "quick": dict(train_scenes=1024, steps=24, batch_size=64, test_scenes=200, epochs=2),
}
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
COLUMNS = {
    "zero_shot_top1": "zero-shot top-1",
    "image_to_text_r1": "I→T R@1",
    "image_to_text_r5": "I→T R@5",
    "text_to_image_r1": "T→I R@1",
    "text_to_image_r5": "T→I R@5",
}


def scenes_with_distinct_captions(scenes):
    """Keeps the first scene of each caption, so a caption has one image."""
    _, first = np.unique(scenes["captions"], return_index=True)
    keep = np.sort(first)
    return {key: value[keep] for key, value in scenes.items()}


def prepare_data(regime, budget, seed, train_digits=digit_scenes.DEFAULT_TRAIN_DIGITS):
    """Train scenes, the preprocessor, and the held-out evaluation tasks.

    Args:
        regime: `"web"` or `"clean"` captions for the training scenes.
        budget: one of `BUDGETS`.
        seed: the scenes' seed.
        train_digits: P, the source digits the training scenes draw on.
    """
    train = digit_scenes.make_scenes(
        budget["train_scenes"], "train", regime, seed, train_digits=train_digits
    )
    vocabulary = caption_vocabulary(train["captions"], vocabulary_size=200)
    tokenizer = caption_tokenizer(vocabulary)
    longest = max(len(ids) for ids in tokenizer(list(train["captions"])))
    # Headroom for evaluation prompts longer than any training caption.
    preprocessor = ThreeTowerPreprocessor(tokenizer, sequence_length=longest + 4)
    return train, preprocessor, evaluation_tasks(preprocessor, budget, seed)


def evaluation_tasks(preprocessor, budget, seed, split="test"):
    """Held-out retrieval and zero-shot tasks, for `evaluate_model`.

    Evaluation is on clean scenes (exact captions), whatever the training
    data, as image-text benchmarks such as COCO are clean.

    Args:
        preprocessor: the `ThreeTowerPreprocessor` that tokenizes captions.
        budget: one of `BUDGETS` (its `test_scenes`).
        seed: the scenes' seed.
        split: `"test"` (the 500 test source digits: the reported numbers)
            or `"validation"` (the 500 validation source digits: where α is
            chosen).
    """
    test = scenes_with_distinct_captions(
        digit_scenes.make_scenes(budget["test_scenes"], split, "clean", seed)
    )
    texts = preprocessor(list(test["captions"]))
    zero_shot = digit_scenes.single_digit_task(budget["test_scenes"] // 2, split, seed)
    return {
        "retrieval": {
            "images": test["images"],
            "texts": {k: keras.ops.convert_to_numpy(v) for k, v in texts.items()},
            "text_to_image": np.arange(len(test["captions"])),
        },
        "zero_shot": {**zero_shot, "tokenizer": preprocessor},
    }


def train_dataset(train, preprocessor, batch_size, seed):
    """Shuffled, repeated, preprocessed batches of the training scenes."""
    import tensorflow as tf

    return (
        digit_scenes.as_dataset(train)
        .shuffle(len(train["captions"]), seed=seed)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def chosen_alphas(validation_sweep):
    """Each metric's α: the one with the best validation value (ties: the larger α)."""
    return {
        key: max(validation_sweep, key=lambda row: (row[key], row["alpha"]))["alpha"]
        for key in COLUMNS
    }


def duration(seconds):
    """`"1h 02m"`, `"3m 05s"` or `"42s"`."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def progress(index, count, name, elapsed, model_seconds):
    """The line before model `index` (from 1) of `count`: time spent and left.

    The estimate is the mean time of the models trained so far times the
    models left; there is none before the first has finished.

    Args:
        index: this model's number, from 1.
        count: how many models the run trains.
        name: this model's name.
        elapsed: seconds since the run started.
        model_seconds: the seconds each finished model took.
    """
    line = f"model {index} of {count}: {name}; {duration(elapsed)} elapsed"
    if model_seconds:
        left = sum(model_seconds) / len(model_seconds) * (count - index + 1)
        line += f", about {duration(left)} left"
    return line


def train_and_evaluate(
    name,
    objective,
    backbone,
    train,
    preprocessor,
    tasks,
    budget,
    seed,
    validation_tasks,
    model_options=None,
):
    """Trains one model with the shared budget; returns it and its results.

    The batches come from a pipeline built after the seed is set, so every
    model trained with the same `train` scenes and seed sees the same
    batches in the same order. A 3T model is also swept along α on the test
    and the validation tasks; `chosen_alpha` holds each metric's α picked on
    the validation tasks. `model_options` go to `build_digit_model`
    (`width`, `pair_weights`).
    """
    print(f"=== {name} ({objective}) ===", flush=True)
    keras.utils.set_random_seed(seed)
    data = train_dataset(train, preprocessor, budget["batch_size"], seed)
    model = build_digit_model(
        objective,
        backbone,
        vocabulary_size=preprocessor.tokenizer.vocabulary_size(),
        sequence_length=preprocessor.sequence_length,
        preprocessor=preprocessor,
        **(model_options or {}),
    )
    steps_per_epoch = budget["steps"] // budget["epochs"]
    model.compile(
        learning_rate=1e-3,
        warmup_steps=budget["steps"] // 10,
        total_steps=steps_per_epoch * budget["epochs"],
    )
    start = time.time()
    history = model.fit(data, epochs=budget["epochs"], steps_per_epoch=steps_per_epoch, verbose=1)
    seconds = time.time() - start
    result = {
        "objective": objective,
        "metrics": evaluate_model(model, **tasks),
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "train_seconds": round(seconds, 1),
        "steps_per_epoch": steps_per_epoch,
        "trainable_parameters": parameter_counts(model)["trainable"],
    }
    if objective == "3t":
        result["alpha_sweep"] = alpha_sweep(model, alphas=ALPHAS, **tasks)
        result["alpha_sweep_validation"] = alpha_sweep(model, alphas=ALPHAS, **validation_tasks)
        result["chosen_alpha"] = chosen_alphas(result["alpha_sweep_validation"])
    return model, result


def at_chosen_alpha(result):
    """Each metric's test value at the α chosen for it on the validation tasks."""
    by_alpha = {row["alpha"]: row for row in result["alpha_sweep"]}
    return {key: by_alpha[alpha][key] for key, alpha in result["chosen_alpha"].items()}


def results_table(results):
    """A Markdown table: one row per model, 3T's α sweep, then 3T at its chosen α."""
    header = "| model | " + " | ".join(COLUMNS.values()) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, result in results.items():
        metrics = result["metrics"]
        lines.append(f"| {name} | " + " | ".join(f"{metrics[k]:.3f}" for k in COLUMNS) + " |")
    for name, result in results.items():
        for row in result.get("alpha_sweep", []):
            if row["alpha"] < 1.0:  # α = 1 is the model's own row
                cells = " | ".join(f"{row[k]:.3f}" for k in COLUMNS)
                lines.append(f"| {name} α={row['alpha']:.2f} | {cells} |")
    for name, result in results.items():
        if "chosen_alpha" in result:
            values = at_chosen_alpha(result)
            cells = " | ".join(
                f"{values[k]:.3f} (α={result['chosen_alpha'][k]:.2f})" for k in COLUMNS
            )
            lines.append(f"| {name}, α chosen on validation | {cells} |")
    return "\n".join(lines)


def chance_levels(tasks):
    """Each metric's value for a random ranking of the evaluation tasks."""
    num_texts = len(tasks["retrieval"]["text_to_image"])
    num_images = len(tasks["retrieval"]["images"])
    levels = {"zero_shot_top1": 1 / len(tasks["zero_shot"]["class_names"])}
    for k in (1, 5):
        levels[f"image_to_text_r{k}"] = min(1.0, k / num_texts)
        levels[f"text_to_image_r{k}"] = min(1.0, k / num_images)
    return levels


def plot_alpha_sweeps(results, tasks, output):
    """One α-sweep figure per 3T model, with the LiT and CLIP it is trained beside."""
    for name, result in results.items():
        if "alpha_sweep" not in result:
            continue
        lit = "LiT mismatched" if "mismatched" in name else "LiT"
        references = {
            other: results[other]["metrics"] for other in ("CLIP", lit) if other in results
        }
        filename = f"alpha_sweep{'_mismatched' if 'mismatched' in name else ''}.png"
        plot_alpha_sweep(
            result["alpha_sweep"],
            os.path.join(output, filename),
            metrics=list(COLUMNS),
            title=f"{name}: held-out metrics along α",
            references=references,
            chance=chance_levels(tasks),
        )


def plot_training_curves(results, path):
    """Training loss (image-text pair) and total loss per epoch, per model."""
    figure = require("matplotlib.figure").Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for name, result in results.items():
        history = result["history"]
        epochs = np.arange(1, len(history["loss"]) + 1)
        axes[0].plot(epochs, history["loss_image_text"], marker="o", label=name)
        axes[1].plot(epochs, history["loss"], marker="o", label=name)
    axes[0].set_title("image-text contrastive loss")
    axes[1].set_title("training objective (3T: mean of its three losses)")
    steps = next(iter(results.values()))["steps_per_epoch"]
    for axis in axes:
        axis.set_xlabel(f"epoch ({steps} steps each)")
        axis.set_ylabel("mean training loss over the epoch")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def default_output(args):
    suffix = "_mismatched" if args.mismatched else ""
    quick = "_quick" if args.quick else ""
    # Named by backend too: runs on two backends keep their own results.
    return os.path.join(
        "runs", f"demo_{keras.backend.backend()}_{args.regime}{suffix}{quick}_seed{args.seed}"
    )


def main(argv=None):
    args = parse_args(argv)
    output = args.output or default_output(args)
    if os.path.exists(os.path.join(output, "results.json")) and not args.overwrite:
        sys.exit(f"{output} holds an earlier run's results; pass --overwrite or choose --output.")
    if args.save_presets and not args.overwrite:
        for objective in ("clip", "lit", "3t"):
            target = os.path.join(args.save_presets, f"{objective}_tiny")
            if os.path.isdir(target) and os.listdir(target):
                sys.exit(
                    f"{target} exists; pass --overwrite or choose another --save-presets folder."
                )
    os.makedirs(output, exist_ok=True)
    budget = BUDGETS["quick" if args.quick else "default"]
    print(
        f"backend {keras.backend.backend()}, regime {args.regime}, "
        f"seed {args.seed}, budget {budget}"
    )

    start = time.time()
    train, preprocessor, tasks = prepare_data(args.regime, budget, args.seed)
    validation = evaluation_tasks(preprocessor, budget, args.seed, split="validation")
    towers = {"matched": load_third_tower_backbone("matched")}
    runs = [("CLIP", "clip", None), ("LiT", "lit", "matched"), ("3T", "3t", "matched")]
    if args.mismatched:
        towers["mismatched"] = load_third_tower_backbone("mismatched")
        runs += [("LiT mismatched", "lit", "mismatched"), ("3T mismatched", "3t", "mismatched")]
    command = "python -m keras_3t demo " + " ".join(argv if argv is not None else sys.argv[2:])
    results = {}
    model_seconds = []
    for index, (name, objective, tower) in enumerate(runs, start=1):
        print(
            "\n" + progress(index, len(runs), name, time.time() - start, model_seconds), flush=True
        )
        model_start = time.time()
        model, results[name] = train_and_evaluate(
            name,
            objective,
            towers.get(tower),
            train,
            preprocessor,
            tasks,
            budget,
            args.seed,
            validation,
        )
        model_seconds.append(time.time() - model_start)
        if args.save_presets and tower != "mismatched":
            model.save_to_preset(
                os.path.join(args.save_presets, f"{objective}_tiny"),
                overwrite=args.overwrite,
                metadata={
                    "command": f"KERAS_BACKEND={keras.backend.backend()} {command}",
                    "regime": args.regime,
                    "seed": args.seed,
                    "budget": budget,
                    "metrics": results[name]["metrics"],
                },
            )

    table = results_table(results)
    print("\nHeld-out test scenes (exact captions); 3T α rows: α·main + (1−α)·third-tower path")
    print(table)
    summary = {
        "command": command,
        "backend": keras.backend.backend(),
        "regime": args.regime,
        "seed": args.seed,
        "budget": budget,
        "retrieval_test_pairs": len(tasks["retrieval"]["text_to_image"]),
        "zero_shot_test_images": len(tasks["zero_shot"]["labels"]),
        "seconds": round(time.time() - start, 1),
        "models": results,
    }
    with open(os.path.join(output, "results.json"), "w") as file:
        json.dump(summary, file, indent=2)
    with open(os.path.join(output, "results.md"), "w") as file:
        file.write(table + "\n")
    plot_training_curves(results, os.path.join(output, "training_curves.png"))
    plot_alpha_sweeps(results, tasks, output)
    print(f"\n{summary['seconds']:.0f} s; wrote results.json, results.md and plots to {output}")
    return summary
