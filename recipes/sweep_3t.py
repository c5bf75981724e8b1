"""A KerasTuner sweep of 3T's knobs on the embedded digit scenes.

    KERAS_BACKEND=torch python recipes/sweep_3t.py --output runs/sweep

Searches the learning rate, the two third-tower pair weights and the
initial temperature of `3t_tiny` (fresh main towers, the shipped pretrained
digit classifier as third tower) with RandomSearch, BayesianOptimization or
Hyperband (`--tuner`), scoring each trial by a held-out metric logged by
`keras_3t.callbacks.EvaluationCallback` (`--objective`, maximised). Then it
restores the best trial's model, sweeps the inference-time α on it (no
retraining), and writes to `--output`:

- `results.csv`: one row per trial (id, status, score, every knob);
- `objective.png`: the objective of each trial, best so far marked;
- `best_preset/`: the best trial's model (`keras_3t.presets.load` it);
- `summary.json`: the best trial, its reproduced score and the best α.

Run it again with the same `--output` to resume an interrupted sweep:
finished trials are kept, not redone (KerasTuner's state is in
`OUTPUT/tuner`). `--overwrite` starts over.
"""

import argparse
import csv
import json
import os
import shutil
import sys

from keras_3t.console import quiet_native_logs  # noqa: E402

# Before TensorFlow loads; KERAS_3T_VERBOSE=1 keeps its native log lines.
quiet_native_logs()

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

import keras_3t  # noqa: E402
from keras_3t import tuning  # noqa: E402
from keras_3t.demo import digit_scenes  # noqa: E402
from keras_3t.demo import main_job  # noqa: E402
from keras_3t.evaluation import alpha_sweep  # noqa: E402
from keras_3t.evaluation import evaluate_model  # noqa: E402
from keras_3t.tuning import ThreeTowerHyperModel  # noqa: E402

TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVES = (
    "zero_shot_top1",
    "image_to_text_r1",
    "text_to_image_r1",
    "image_to_text_r5",
    "text_to_image_r5",
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--tuner", choices=TUNERS, default="random")
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="image_to_text_r1",
        help="held-out metric to maximise (the val_ prefix is added)",
    )
    parser.add_argument(
        "--max-trials", type=int, default=6, help="RandomSearch / BayesianOptimization trials"
    )
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs per trial (Hyperband: the most)"
    )
    parser.add_argument("--steps-per-epoch", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-scenes", type=int, default=4096)
    parser.add_argument("--test-scenes", type=int, default=400)
    parser.add_argument(
        "--search",
        nargs="+",
        default=None,
        help="knobs to search (keras_3t.tuning.SEARCH_SPACE); default: "
        "learning_rate weight_image_third weight_text_third temperature",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    return parser.parse_args(argv)


def make_tuner(args, hypermodel, directory):
    common = dict(
        objective=keras_tuner.Objective(f"val_{args.objective}", direction="max"),
        directory=directory,
        project_name="tuner",
        seed=args.seed,
        overwrite=False,
    )
    if args.tuner == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=args.epochs, factor=3, **common)
    if args.tuner == "bayesian":
        return keras_tuner.BayesianOptimization(hypermodel, max_trials=args.max_trials, **common)
    return keras_tuner.RandomSearch(hypermodel, max_trials=args.max_trials, **common)


def trial_rows(tuner, knobs):
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        row = {"trial": trial_id, "status": trial.status, "score": trial.score}
        row.update({name: trial.hyperparameters.values.get(name) for name in knobs})
        rows.append(row)
    return rows


def write_results(rows, knobs, output):
    with open(os.path.join(output, "results.csv"), "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["trial", "status", "score", *knobs])
        writer.writeheader()
        writer.writerows(rows)


def plot_objective(rows, objective, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [(i, row["score"]) for i, row in enumerate(rows) if row["score"] is not None]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    if scored:
        order, scores = zip(*scored)
        axis.plot(order, scores, "o", label="trial")
        axis.plot(order, np.maximum.accumulate(scores), "-", label="best so far")
        axis.legend()
    axis.set_xlabel("trial (in order run)")
    axis.set_ylabel(f"val_{objective}")
    axis.set_title(f"KerasTuner sweep of 3t_tiny ({len(scored)} trials)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def require_a_completed_trial(tuner):
    """KerasTuner logs a failed trial and moves on; with none completed there is no best model."""
    trials = list(tuner.oracle.trials.values())
    if any(trial.status == "COMPLETED" for trial in trials):
        return
    failed = [trial for trial in trials if trial.status == "FAILED"]
    reason = failed[0].message.strip() if failed and failed[0].message else "no trial ran"
    raise RuntimeError(
        f"No trial of the sweep completed ({len(failed)} failed). The first failure:\n{reason}"
    )


def main(argv=None):
    args = parse_args(argv)
    tuner_dir = os.path.join(args.output, "tuner")
    if args.overwrite and os.path.isdir(args.output):
        shutil.rmtree(args.output)
    elif os.path.isdir(args.output) and os.listdir(args.output) and not os.path.isdir(tuner_dir):
        sys.exit(
            f"{args.output} is not empty and holds no sweep to resume; choose another --output."
        )
    os.makedirs(args.output, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    preprocessor = keras_3t.presets.load("3t_tiny", weights=False).preprocessor
    budget = {"train_scenes": args.train_scenes, "test_scenes": args.test_scenes}
    train = digit_scenes.make_scenes(args.train_scenes, "train", "web", args.seed)
    tasks = main_job.evaluation_tasks(preprocessor, budget, args.seed)
    dataset = main_job.train_dataset(train, preprocessor, args.batch_size, args.seed)

    search = args.search or list(tuning.DEFAULT_SEARCH)
    hypermodel = ThreeTowerHyperModel("3t_tiny", evaluation=tasks, search=search, seed=args.seed)
    tuner = make_tuner(args, hypermodel, args.output)
    tuner.search(dataset, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, verbose=2)
    require_a_completed_trial(tuner)

    rows = trial_rows(tuner, search)
    write_results(rows, search, args.output)
    plot_objective(rows, args.objective, os.path.join(args.output, "objective.png"))

    best_trial = tuner.oracle.get_best_trials(1)[0]
    model = tuner.get_best_models(1)[0]
    reproduced = evaluate_model(model, **tasks)[args.objective]
    by_alpha = alpha_sweep(model, alphas=(0.0, 0.25, 0.5, 0.75, 1.0), **tasks)
    best_alpha = max(by_alpha, key=lambda row: row[args.objective])
    summary = {
        "objective": f"val_{args.objective}",
        "trials": len(rows),
        "best_trial": best_trial.trial_id,
        "best_score": best_trial.score,
        "reproduced_score": reproduced,
        "hyperparameters": best_trial.hyperparameters.values,
        "best_alpha": best_alpha["alpha"],
        "score_at_best_alpha": best_alpha[args.objective],
        "score_by_alpha": {str(row["alpha"]): row[args.objective] for row in by_alpha},
    }
    # Derived from the sweep, so rewritten on every (resumed) run.
    model.save_to_preset(
        os.path.join(args.output, "best_preset"), overwrite=True, metadata={"sweep": summary}
    )
    with open(os.path.join(args.output, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    print(
        f"{len(rows)} trials; best {best_trial.trial_id}: val_{args.objective} {best_trial.score:.4f} "
        f"(reproduced {reproduced:.4f}); best α {summary['best_alpha']}: {summary['score_at_best_alpha']:.4f}"
    )
    return summary


if __name__ == "__main__":
    main()
