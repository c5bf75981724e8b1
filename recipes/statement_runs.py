"""The runs behind the paper's statements that the demo and the map cannot answer.

Each experiment trains LiT and 3T (the reference also CLIP) on web-like
captions with the main job's budget (`keras_3t.demo.main_job`: 400 steps of
128, the same seed, data and order of batches for every model of a seed),
seeds 0–2, and evaluates them on the held-out clean test scenes at α = 1 and
along α (3T), each metric's α chosen on the validation scenes:

- `reference`: CLIP, LiT and 3T with the shipped digit classifier
  (L = 500 labelled digits), towers of width 64, P = 2,500 source digits.
- `deficient`: a digit classifier pretrained on the same pool without the
  digits 7, 8 and 9 (`MISSING_DIGITS`). Every run is also scored on those
  digits alone: zero-shot top-1 of the one-digit scenes showing one, and
  retrieval among the test scenes that contain one.
- `strength`: matched digit classifiers of different strength, pretrained
  on fewer labelled digits: 2 and 5 of each class (`L20s`, `L50s`) and the
  regime map's L = 150.
- `parity`: a mismatched classifier that still sees digits: it was
  pretrained to tell even from odd on the same 500 digits.
- `width`: the towers trained from scratch at widths 32 and 128 (LiT's
  frozen image tower and 3T's third tower as in the reference).
- `pairs`: P = 300 and 1,000 source digits.

The classifiers are pretrained once into `ROOT/third_towers/<tower>/`
(`keras_3t.demo.digit_models.pretrain_third_tower`, 300 steps), the
reference's loads from `saved_models/`. Every run writes
`ROOT/runs/<run>.json` when it finishes and a run whose file exists is not
redone: stop at any time and run the same command to go on. Experiments run
in the order above, all seeds of one before the next. `--publish` copies the
run files into `docs/results/statements/runs/`; `recipes/paper_statements.py`
reads them.

    KERAS_BACKEND=torch python recipes/statement_runs.py
    KERAS_BACKEND=torch python recipes/statement_runs.py --experiments reference deficient
"""

import argparse
import gc
import json
import os
import shutil
import sys
import time

from keras_3t.console import quiet_native_logs

# Before TensorFlow loads; KERAS_3T_VERBOSE=1 keeps its native log lines.
quiet_native_logs()

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.demo import digit_scenes  # noqa: E402
from keras_3t.demo import main_job  # noqa: E402
from keras_3t.demo.digit_models import SAVED_MODELS  # noqa: E402
from keras_3t.demo.digit_models import preset_path  # noqa: E402
from keras_3t.demo.digit_models import pretrain_third_tower  # noqa: E402
from keras_3t.evaluation import evaluate_model  # noqa: E402

REGIME = "web"
SEEDS = (0, 1, 2)
WIDTH = 64
PAIRS = digit_scenes.DEFAULT_TRAIN_DIGITS
MISSING_DIGITS = (7, 8, 9)
# Each third tower: its pretraining task and pool (`pretrain_third_tower`'s
# arguments); "L500" is the shipped digit classifier.
TOWERS = {
    "L500": None,
    "L150": dict(task="digit", labelled_digits=150),
    "L50s": dict(task="digit", labelled_digits=1500, per_class=5),
    "L20s": dict(task="digit", labelled_digits=1500, per_class=2),
    "deficient": dict(
        task="digit", labelled_digits=500, digits=[d for d in range(10) if d not in MISSING_DIGITS]
    ),
    "parity": dict(task="parity", labelled_digits=500),
}
# Each experiment's runs as (objective, tower, width, P); seeds 0–2 each.
EXPERIMENTS = {
    "reference": [
        ("clip", None, WIDTH, PAIRS),
        ("lit", "L500", WIDTH, PAIRS),
        ("3t", "L500", WIDTH, PAIRS),
    ],
    "deficient": [(objective, "deficient", WIDTH, PAIRS) for objective in ("lit", "3t")],
    "strength": [
        (objective, tower, WIDTH, PAIRS)
        for tower in ("L20s", "L50s", "L150")
        for objective in ("lit", "3t")
    ],
    "parity": [(objective, "parity", WIDTH, PAIRS) for objective in ("lit", "3t")],
    "width": [
        (objective, "L500", width, PAIRS) for width in (32, 128) for objective in ("lit", "3t")
    ],
    "pairs": [
        (objective, "L500", WIDTH, pairs) for pairs in (300, 1000) for objective in ("lit", "3t")
    ],
}


def run_name(objective, tower, width, pairs, seed):
    """A run's file name: CLIP's has no tower."""
    return f"{objective}_{tower or 'none'}_w{width}_P{pairs}_seed{seed}"


def planned_runs(experiments, seeds):
    """Every (objective, tower, width, P, seed), experiment by experiment, each run once."""
    plan, names = [], set()
    for experiment in experiments:
        for seed in seeds:
            for run in EXPERIMENTS[experiment]:
                if run_name(*run, seed) not in names:
                    plan.append((*run, seed))
                    names.add(run_name(*run, seed))
    return plan


def third_tower(root, tower, pretrain_steps, command):
    """The pretrained backbone of `tower` and its metadata: made once, then loaded."""
    if TOWERS[tower] is None:
        path = preset_path("digit", SAVED_MODELS)
    else:
        options = dict(TOWERS[tower])
        path = preset_path(options["task"], os.path.join(root, "third_towers", tower))
        if not os.path.isdir(path):
            print(f"\n=== pretraining the third tower {tower}: {options} ===", flush=True)
            pretrain_third_tower(
                options.pop("task"), path, steps=pretrain_steps, command=command, **options
            )
    with open(os.path.join(path, "metadata.json")) as file:
        metadata = json.load(file)
    return keras_hub.models.Backbone.from_preset(path), metadata


def missing_digit_tasks(tasks, preprocessor, budget, seed):
    """The test tasks narrowed to `MISSING_DIGITS`.

    Zero-shot: the one-digit scenes of a missing digit (still classified
    among all ten). Retrieval: among the test scenes (distinct captions)
    that contain at least one missing digit.
    """
    test = main_job.scenes_with_distinct_captions(
        digit_scenes.make_scenes(budget["test_scenes"], "test", "clean", seed)
    )
    keep = np.isin(test["digits"], MISSING_DIGITS).any(axis=1)
    texts = preprocessor(list(test["captions"][keep]))
    zero_shot = tasks["zero_shot"]
    shown = np.isin(zero_shot["labels"], MISSING_DIGITS)
    return {
        "retrieval": {
            "images": test["images"][keep],
            "texts": {k: keras.ops.convert_to_numpy(v) for k, v in texts.items()},
            "text_to_image": np.arange(int(keep.sum())),
        },
        "zero_shot": {
            **zero_shot,
            "images": zero_shot["images"][shown],
            "labels": zero_shot["labels"][shown],
        },
    }


def train_run(root, objective, tower, width, pairs, seed, budget, pretrain_steps, command):
    """Trains and evaluates one run; writes its JSON atomically."""
    train, preprocessor, tasks = main_job.prepare_data(REGIME, budget, seed, train_digits=pairs)
    validation = main_job.evaluation_tasks(preprocessor, budget, seed, split="validation")
    backbone, metadata = (
        (None, {}) if tower is None else third_tower(root, tower, pretrain_steps, command)
    )
    name = run_name(objective, tower, width, pairs, seed)
    model, result = main_job.train_and_evaluate(
        name,
        objective,
        backbone,
        train,
        preprocessor,
        tasks,
        budget,
        seed,
        validation,
        model_options={"width": width},
    )
    missing = missing_digit_tasks(tasks, preprocessor, budget, seed)
    result.update(
        tower=tower,
        third_tower_held_out_accuracy=metadata.get("held_out_accuracy"),
        third_tower_pretraining={
            k: metadata.get(k)
            for k in ("task", "labelled_digits", "pretrained_digits", "per_class", "digits")
        },
        width=width,
        train_digits=pairs,
        seed=seed,
        regime=REGIME,
        budget=budget,
        backend=keras.backend.backend(),
        missing_digits=list(MISSING_DIGITS),
        metrics_on_missing_digits=evaluate_model(model, **missing),
        retrieval_test_pairs=len(tasks["retrieval"]["text_to_image"]),
        retrieval_test_pairs_with_missing_digits=len(missing["retrieval"]["text_to_image"]),
        command=command,
    )
    folder = os.path.join(root, "runs")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.json")
    with open(path + ".partial", "w") as file:
        json.dump(result, file, indent=1)
    os.replace(path + ".partial", path)


def load_runs(folder):
    """Every finished run in `folder`, by name."""
    runs = {}
    for filename in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if filename.endswith(".json"):
            with open(os.path.join(folder, filename)) as file:
                runs[filename[: -len(".json")]] = json.load(file)
    return runs


def publish(root):
    """Copies the finished runs into docs/results/statements/runs/."""
    target = os.path.join("docs", "results", "statements", "runs")
    os.makedirs(target, exist_ok=True)
    names = load_runs(os.path.join(root, "runs"))
    for name in names:
        shutil.copyfile(
            os.path.join(root, "runs", f"{name}.json"), os.path.join(target, f"{name}.json")
        )
    print(f"published {len(names)} runs to {target}/")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.path.join("runs", "statements"))
    parser.add_argument(
        "--experiments", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS)
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--budget",
        choices=sorted(main_job.BUDGETS),
        default="default",
        help="the main job's budget per model (quick: a smoke run)",
    )
    parser.add_argument(
        "--pretrain-steps", type=int, default=300, help="the third towers' pretraining steps"
    )
    parser.add_argument("--publish", action="store_true", help="copy the run files into docs/")
    args = parser.parse_args(argv)
    command = (
        f"KERAS_BACKEND={keras.backend.backend()} python recipes/statement_runs.py "
        + " ".join(sys.argv[1:] if argv is None else argv)
    )
    plan = planned_runs(args.experiments, args.seeds)
    finished = load_runs(os.path.join(args.root, "runs"))
    todo = [run for run in plan if run_name(*run) not in finished]
    print(f"{len(plan)} runs planned, {len(plan) - len(todo)} finished, {len(todo)} to go")
    start = time.time()
    for count, run in enumerate(todo, 1):
        print(f"\n### run {count}/{len(todo)}: {run_name(*run)}", flush=True)
        train_run(args.root, *run, main_job.BUDGETS[args.budget], args.pretrain_steps, command)
        keras.backend.clear_session()
        gc.collect()
    print(f"{len(todo)} runs in {time.time() - start:.0f} s")
    if args.publish:
        publish(args.root)


if __name__ == "__main__":
    main()
