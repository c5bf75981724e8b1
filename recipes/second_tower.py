"""Does a second frozen tower help? 3T with the matched, the mismatched, and both.

On the main job's default data and budget (`keras-3t demo`: web captions,
400 steps of 128), trains 3T four ways per seed with the same data, order,
steps and seed: the shipped digit classifier as the frozen tower
("matched"), the stroke thickness classifier ("mismatched"), and both at
once (`third_towers={"digits": ..., "thickness": ...}`), with equal pair
weights ("both": the main image-text pair weighs 1/5) and with the main pair
kept at 1/3 ("both_main_third"). Each run is evaluated on the held-out clean
test scenes at α = 1 and along the α sweep (with both towers, 1 − α is
shared equally), with each metric's α chosen on the validation scenes, and
written to `OUTPUT/runs/<variant>_seed<seed>.json`; a run whose file exists
is read, not redone, so the recipe resumes where it stopped. Then it writes
`OUTPUT/summary.json` and prints the Markdown table of docs/results.md: each
metric's mean ± std over seeds at α = 1 and at each run's validation-chosen α.

    KERAS_BACKEND=torch python recipes/second_tower.py --seeds 0 1 2 --output runs/second_tower
"""

import argparse
import json
import os

from keras_3t.console import quiet_native_logs

# Before TensorFlow loads; KERAS_3T_VERBOSE=1 keeps its native log lines.
quiet_native_logs()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.demo import main_job  # noqa: E402
from keras_3t.demo.digit_models import load_third_tower_backbone  # noqa: E402

REGIME = "web"
VARIANTS = {
    "matched": ("matched",),
    "mismatched": ("mismatched",),
    "both": ("matched", "mismatched"),
    "both_main_third": ("matched", "mismatched"),
}
# Each tower's name in the two-tower model: what its classifier knows.
TOWER_NAMES = {"matched": "digits", "mismatched": "thickness"}
# With equal pair weights two towers give the main image-text pair 1/5 of
# the loss, one tower 1/3; "both_main_third" keeps it at 1/3 and shares the
# rest equally among the four frozen-tower pairs.
PAIR_WEIGHTS = {
    "both_main_third": {
        "image_text": 1 / 3,
        **{f"{side}_{name}": 1 / 6 for side in ("image", "text") for name in TOWER_NAMES.values()},
    }
}
METRICS = {
    "zero_shot_top1": "zero-shot top-1",
    "image_to_text_r1": "I→T R@1",
    "text_to_image_r1": "T→I R@1",
}


def third_backbone(variant, backbones):
    """One backbone, or for "both" a dict of them by tower name."""
    towers = VARIANTS[variant]
    if len(towers) == 1:
        return backbones[towers[0]]
    return {TOWER_NAMES[tower]: backbones[tower] for tower in towers}


def run_or_load(variant, seed, output, backbones):
    path = os.path.join(output, "runs", f"{variant}_seed{seed}.json")
    if os.path.exists(path):
        with open(path) as file:
            return json.load(file)
    budget = main_job.BUDGETS["default"]
    train, preprocessor, tasks = main_job.prepare_data(REGIME, budget, seed)
    validation = main_job.evaluation_tasks(preprocessor, budget, seed, split="validation")
    _, result = main_job.train_and_evaluate(
        f"3T {variant}",
        "3t",
        third_backbone(variant, backbones),
        train,
        preprocessor,
        tasks,
        budget,
        seed,
        validation,
        model_options={"pair_weights": PAIR_WEIGHTS.get(variant)},
    )
    result.update(variant=variant, seed=seed, regime=REGIME, backend=keras.backend.backend())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = path + ".partial"
    with open(staging, "w") as file:
        json.dump(result, file, indent=1)
    os.replace(staging, path)
    return result


def summarize(runs):
    """Per variant: mean ± std over seeds at α = 1 and at each run's validation-chosen α."""
    summary = {}
    for variant in VARIANTS:
        results = [run for run in runs if run["variant"] == variant]
        if not results:
            continue
        entry = {"seeds": sorted(run["seed"] for run in results)}
        for metric in METRICS:
            at_one = [run["metrics"][metric] for run in results]
            chosen = [main_job.at_chosen_alpha(run)[metric] for run in results]
            entry[metric] = {
                "alpha_1": (float(np.mean(at_one)), float(np.std(at_one))),
                "chosen_alphas": [run["chosen_alpha"][metric] for run in results],
                "chosen": (float(np.mean(chosen)), float(np.std(chosen))),
            }
        summary[variant] = entry
    return summary


def table(summary):
    header = "| 3T with | seeds | " + " | ".join(
        f"{name} α=1 | {name} at the validation α" for name in METRICS.values()
    )
    lines = [header + " |", "|---" * (2 + 2 * len(METRICS)) + "|"]
    for variant, entry in summary.items():
        cells = []
        for metric in METRICS:
            (mean, std), chosen = entry[metric]["alpha_1"], entry[metric]["chosen"]
            alphas = ", ".join(f"{alpha:g}" for alpha in entry[metric]["chosen_alphas"])
            cells.append(f"{mean:.3f} ± {std:.3f}")
            cells.append(f"{chosen[0]:.3f} ± {chosen[1]:.3f} (α: {alphas})")
        lines.append(f"| {variant} | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--output", default="runs/second_tower")
    args = parser.parse_args(argv)
    backbones = {tower: load_third_tower_backbone(tower) for tower in TOWER_NAMES}
    runs = [
        run_or_load(variant, seed, args.output, backbones)
        for seed in args.seeds
        for variant in args.variants
    ]
    summary = summarize(runs)
    with open(os.path.join(args.output, "summary.json"), "w") as file:
        json.dump(summary, file, indent=1)
    print(table(summary))
    return summary


if __name__ == "__main__":
    main()
