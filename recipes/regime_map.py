"""The regime map: where does 3T beat LiT and CLIP, as labels (L) and pairs (P) vary?

For every cell of L labelled digits (the third tower's pretraining pool) ×
P source digits (the image-caption pairs' pool), trains CLIP, LiT and 3T on
web-like captions with the main job's budget (`keras_3t.demo.main_job.BUDGETS`) and
evaluates them on the held-out test scenes, as `keras-3t demo` does:

    KERAS_BACKEND=torch python recipes/regime_map.py
    KERAS_BACKEND=torch python recipes/regime_map.py --publish

- The matched third tower of each L is pretrained once
  (`keras_3t.demo.digit_models.pretrain_third_tower`, the settings of
  `recipes/pretrain_third_tower.py`) into `ROOT/third_towers/L<L>/`.
- CLIP does not use the third tower, so one CLIP run per (P, seed) serves
  every L.
- Every run writes `ROOT/runs/<run>/results.json` when it finishes, and a
  run whose file exists is reused: stop the recipe at any time and run the
  same command again to go on. The seeds are run in order (seed 0 in every
  cell first, the default cell first), so a partial map is a complete map
  of its first seeds.
- At the end (and with `--summarize-only`, from whatever has finished) it
  writes `ROOT/summary.json` (per cell and model: every metric's values,
  mean and standard deviation over seeds; 3T − LiT and 3T − CLIP per seed),
  `ROOT/summary.md` (the same as a Markdown table, also printed) and
  `ROOT/regime_map.png`, heatmaps of 3T − LiT and 3T − CLIP for
  image→text R@1 and zero-shot top-1, each cell's mean ± std over seeds.
- `--publish` copies the summary, the per-run JSONs and the plot into
  `docs/results/regime_map/` and `docs/images/regime_map.png`.
"""

import argparse
import gc
import json
import os
import shutil
import sys

from keras_3t.console import quiet_native_logs  # noqa: E402

# Before TensorFlow loads; KERAS_3T_VERBOSE=1 keeps its native log lines.
quiet_native_logs()

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.demo import digit_scenes  # noqa: E402
from keras_3t.demo import main_job  # noqa: E402
from keras_3t.demo.digit_models import preset_path  # noqa: E402
from keras_3t.demo.digit_models import pretrain_third_tower  # noqa: E402

LABELLED = (150, 500, 1500)
PAIRS = (300, 1000, 2500)
SEEDS = (0, 1)
DEFAULT_CELL = (digit_scenes.DEFAULT_LABELLED_DIGITS, digit_scenes.DEFAULT_TRAIN_DIGITS)
DEFAULT_CELL_SEEDS = (0, 1, 2)
REGIME = "web"
# The differences the map shows: (metric, its name in the plots).
MAP_METRICS = (("image_to_text_r1", "image→text R@1"), ("zero_shot_top1", "zero-shot top-1"))
BASELINES = ("LiT", "CLIP")


def run_name(objective, labelled, pairs, seed):
    """A run's folder name; CLIP's has no L, since it does not use the third tower."""
    if objective == "clip":
        return f"clip_P{pairs}_seed{seed}"
    return f"{objective}_L{labelled}_P{pairs}_seed{seed}"


def planned_runs(labelled, pairs, seeds, default_cell_seeds):
    """Every (objective, L, P, seed) to run, seed by seed, the default cell first."""
    cells = sorted(((L, P) for L in labelled for P in pairs), key=lambda cell: cell != DEFAULT_CELL)
    plan, names = [], set()
    for seed in sorted(set(seeds) | set(default_cell_seeds)):
        for L, P in cells:
            wanted = seeds if (L, P) != DEFAULT_CELL else default_cell_seeds
            for objective in ("clip", "lit", "3t"):
                run = (objective, L, P, seed)
                if seed in wanted and run_name(*run) not in names:
                    plan.append(run)
                    names.add(run_name(*run))
    return plan


def third_tower(root, labelled, pretrain_steps, command):
    """The matched third tower pretrained on L labelled digits: made once, then loaded."""
    path = preset_path("digit", os.path.join(root, "third_towers", f"L{labelled}"))
    if not os.path.isdir(path):
        print(
            f"\n=== pretraining the third tower on L = {labelled} labelled digits ===", flush=True
        )
        pretrain_third_tower(
            "digit", path, labelled_digits=labelled, steps=pretrain_steps, command=command
        )
    with open(os.path.join(path, "metadata.json")) as file:
        accuracy = json.load(file)["held_out_accuracy"]
    return keras_hub.models.Backbone.from_preset(path), accuracy


def train_run(root, objective, labelled, pairs, seed, budget, pretrain_steps, command):
    """Trains and evaluates one run; writes its results.json atomically."""
    train, preprocessor, tasks = main_job.prepare_data(REGIME, budget, seed, train_digits=pairs)
    validation = main_job.evaluation_tasks(preprocessor, budget, seed, split="validation")
    backbone, accuracy = (None, None)
    if objective != "clip":
        backbone, accuracy = third_tower(root, labelled, pretrain_steps, command)
    name = run_name(objective, labelled, pairs, seed)
    _, result = main_job.train_and_evaluate(
        name, objective, backbone, train, preprocessor, tasks, budget, seed, validation
    )
    result.update(
        labelled_digits=None if objective == "clip" else labelled,
        train_digits=pairs,
        seed=seed,
        regime=REGIME,
        budget=budget,
        backend=keras.backend.backend(),
        third_tower_held_out_accuracy=accuracy,
        retrieval_test_pairs=len(tasks["retrieval"]["text_to_image"]),
        command=command,
    )
    folder = os.path.join(root, "runs", name)
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, "results.json.partial")
    with open(partial, "w") as file:
        json.dump(result, file, indent=2)
    os.replace(partial, os.path.join(folder, "results.json"))


def load_runs(root):
    """Every finished run's results, by folder name."""
    runs = {}
    folder = os.path.join(root, "runs")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name, "results.json")
        if os.path.exists(path):
            with open(path) as file:
                runs[name] = json.load(file)
    return runs


def _spread(values):
    values = np.asarray(values, "float64")
    return {"values": values.tolist(), "mean": float(values.mean()), "std": float(values.std())}


def summarize(runs, labelled, pairs):
    """Per cell: each model's metrics over seeds, and 3T − baseline per seed.

    A cell's seeds are those where all three models have finished.
    """
    cells = []
    for L in labelled:
        for P in pairs:
            seeds = sorted(
                run["seed"] for name, run in runs.items() if name.startswith(f"3t_L{L}_P{P}_")
            )
            seeds = [
                s
                for s in seeds
                if run_name("lit", L, P, s) in runs and run_name("clip", L, P, s) in runs
            ]
            if not seeds:
                continue
            models = {
                label: [runs[run_name(objective, L, P, s)] for s in seeds]
                for label, objective in (("CLIP", "clip"), ("LiT", "lit"), ("3T", "3t"))
            }
            cell = {
                "labelled_digits": L,
                "train_digits": P,
                "seeds": seeds,
                "third_tower_held_out_accuracy": models["3T"][0]["third_tower_held_out_accuracy"],
                "metrics": {
                    label: {
                        key: _spread([r["metrics"][key] for r in results])
                        for key in main_job.COLUMNS
                    }
                    for label, results in models.items()
                },
                "alpha_3t": {
                    key: _spread([main_job.at_chosen_alpha(r)[key] for r in models["3T"]])
                    for key in main_job.COLUMNS
                },
                "differences": {},
            }
            for key, _ in MAP_METRICS:
                for baseline in BASELINES:
                    cell["differences"][f"3T - {baseline} {key}"] = _spread(
                        [
                            a["metrics"][key] - b["metrics"][key]
                            for a, b in zip(models["3T"], models[baseline])
                        ]
                    )
            cells.append(cell)
    return {
        "regime": REGIME,
        "labelled_digits": list(labelled),
        "train_digits": list(pairs),
        "cells": cells,
    }


def markdown_map(summary):
    """The map as Markdown: per cell, the models' means and 3T's differences.

    "held" counts the seeds in which 3T beat the baseline on that metric;
    "3T at validation α" is 3T's test value at the α chosen for that metric
    on the validation scenes.
    """
    lines = [
        "| L | P | seeds | third tower held-out | metric | CLIP | LiT | 3T | 3T − LiT (held) "
        "| 3T − CLIP (held) | 3T at validation α |",
        "|---" * 11 + "|",
    ]
    for cell in summary["cells"]:
        for key, name in (*MAP_METRICS, ("text_to_image_r1", "text→image R@1")):
            means = {label: cell["metrics"][label][key]["mean"] for label in ("CLIP", "LiT", "3T")}
            differences = []
            for baseline in BASELINES:
                values = [
                    a - b
                    for a, b in zip(
                        cell["metrics"]["3T"][key]["values"],
                        cell["metrics"][baseline][key]["values"],
                    )
                ]
                held = sum(value > 0 for value in values)
                differences.append(
                    f"{np.mean(values):+.3f} ± {np.std(values):.3f} ({held}/{len(values)})"
                )
            lines.append(
                f"| {cell['labelled_digits']} | {cell['train_digits']} | {len(cell['seeds'])} "
                f"| {cell['third_tower_held_out_accuracy']:.3f} | {name} "
                f"| {means['CLIP']:.3f} | {means['LiT']:.3f} | {means['3T']:.3f} "
                f"| {differences[0]} | {differences[1]} "
                f"| {cell['alpha_3t'][key]['mean']:.3f} |"
            )
    return "\n".join(lines)


def plot_map(summary, path):
    """Heatmaps of 3T − LiT and 3T − CLIP, one row per metric; mean ± std per cell."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    labelled, pairs = summary["labelled_digits"], summary["train_digits"]
    figure, axes = pyplot.subplots(
        len(MAP_METRICS),
        len(BASELINES),
        figsize=(5.2 * len(BASELINES), 4.2 * len(MAP_METRICS)),
        squeeze=False,
    )
    for row, (key, metric_name) in enumerate(MAP_METRICS):
        for column, baseline in enumerate(BASELINES):
            axis = axes[row, column]
            mean = np.full((len(labelled), len(pairs)), np.nan)
            text = {}
            for cell in summary["cells"]:
                i, j = labelled.index(cell["labelled_digits"]), pairs.index(cell["train_digits"])
                spread = cell["differences"][f"3T - {baseline} {key}"]
                mean[i, j] = spread["mean"]
                text[i, j] = (
                    f"{spread['mean']:+.3f}\n± {spread['std']:.3f}\n(n={len(spread['values'])})"
                )
            limit = max(0.05, np.nanmax(np.abs(mean))) if np.isfinite(mean).any() else 1.0
            image = axis.imshow(mean, cmap="RdBu", vmin=-limit, vmax=limit, origin="lower")
            for i in range(len(labelled)):
                for j in range(len(pairs)):
                    dark = np.isfinite(mean[i, j]) and abs(mean[i, j]) > 0.6 * limit
                    axis.text(
                        j,
                        i,
                        text.get((i, j), "not run"),
                        ha="center",
                        va="center",
                        fontsize=9,
                        color="white" if dark else "black",
                    )
            axis.set_xticks(range(len(pairs)), [str(p) for p in pairs])
            axis.set_yticks(range(len(labelled)), [str(count) for count in labelled])
            axis.set_xlabel("P: source digits in the image-caption pairs")
            axis.set_ylabel("L: labelled digits of the third tower")
            axis.set_title(f"3T − {baseline}, {metric_name}")
            figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.suptitle("Web-like captions, held-out test scenes; blue: 3T ahead")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def publish(root, summary_path, plot_path, runs):
    """Copies the summary, the per-run JSONs and the plot into docs/.

    The published runs are replaced as a whole, so none of an earlier map stays.
    """
    target = os.path.join("docs", "results", "regime_map")
    shutil.rmtree(os.path.join(target, "runs"), ignore_errors=True)
    os.makedirs(os.path.join(target, "runs"))
    shutil.copyfile(summary_path, os.path.join(target, "summary.json"))
    shutil.copyfile(os.path.join(root, "summary.md"), os.path.join(target, "summary.md"))
    for name in runs:
        shutil.copyfile(
            os.path.join(root, "runs", name, "results.json"),
            os.path.join(target, "runs", f"{name}.json"),
        )
    shutil.copyfile(plot_path, os.path.join("docs", "images", "regime_map.png"))
    print(f"published {len(runs)} runs to {target}/ and docs/images/regime_map.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.path.join("runs", "regime_map"))
    parser.add_argument("--labelled", type=int, nargs="+", default=list(LABELLED))
    parser.add_argument("--pairs", type=int, nargs="+", default=list(PAIRS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--default-cell-seeds", type=int, nargs="+", default=list(DEFAULT_CELL_SEEDS)
    )
    parser.add_argument(
        "--budget",
        choices=sorted(main_job.BUDGETS),
        default="default",
        help="the main job's budget per model (quick: a smoke run)",
    )
    parser.add_argument(
        "--pretrain-steps", type=int, default=300, help="the third towers' pretraining steps"
    )
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="train nothing: summarize and plot the finished runs",
    )
    parser.add_argument(
        "--publish", action="store_true", help="copy the summary, runs and plot into docs/"
    )
    args = parser.parse_args(argv)
    for L in args.labelled:
        for P in args.pairs:
            digit_scenes.source_pools(5000, labelled_digits=L, train_digits=P)  # refuses overlap
    command = f"KERAS_BACKEND={keras.backend.backend()} python recipes/regime_map.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if not args.summarize_only:
        plan = planned_runs(args.labelled, args.pairs, args.seeds, args.default_cell_seeds)
        finished = load_runs(args.root)
        todo = [run for run in plan if run_name(*run) not in finished]
        print(f"{len(plan)} runs in the map, {len(plan) - len(todo)} finished, {len(todo)} to go")
        for count, run in enumerate(todo, 1):
            print(f"\n### run {count}/{len(todo)}: {run_name(*run)}", flush=True)
            train_run(args.root, *run, main_job.BUDGETS[args.budget], args.pretrain_steps, command)
            keras.backend.clear_session()
            gc.collect()
    runs = load_runs(args.root)
    summary = summarize(runs, args.labelled, args.pairs)
    summary["command"] = command
    summary_path = os.path.join(args.root, "summary.json")
    os.makedirs(args.root, exist_ok=True)
    with open(summary_path, "w") as file:
        json.dump(summary, file, indent=2)
    plot_path = plot_map(summary, os.path.join(args.root, "regime_map.png"))
    table = markdown_map(summary)
    with open(os.path.join(args.root, "summary.md"), "w") as file:
        file.write(table + "\n")
    print(table)
    print(f"wrote {summary_path}, summary.md and {plot_path} ({len(summary['cells'])} cells)")
    if args.publish:
        publish(args.root, summary_path, plot_path, runs)
    return summary


if __name__ == "__main__":
    main()
