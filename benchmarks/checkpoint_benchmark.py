"""What a resumable checkpoint costs against Keras's plain `save_weights`, same process.

For one preset (fresh weights, no download; the optimizer's slots built):

- **save**: `keras_3t.callbacks.TrainingCheckpoint` writing one checkpoint
  (weights file, SHA-256 of it, random states, `state.json`, fsync, rename)
  vs `model.save_weights` of the same model and optimizer to a plain file;
- **restore**: the callback resuming from it (hash check, shape check,
  `load_weights`, random states) vs `model.load_weights` of the plain file.

Runs alternate (baseline, checkpoint, baseline, ...) and the medians are
reported, with the ratio checkpoint / baseline and the files' size.

    KERAS_BACKEND=torch python benchmarks/checkpoint_benchmark.py --preset 3t_vitb16 --repeats 3
"""

import argparse
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t import presets  # noqa: E402
from keras_3t.callbacks import TrainingCheckpoint  # noqa: E402
from keras_3t.checkpoint import list_checkpoints  # noqa: E402


def build(preset):
    model = presets.load(preset, weights=False, third_tower_weights=False, preprocessor=False)
    model.compile()
    model.optimizer.build(model.trainable_variables)
    # The checkpoint is taken after one step: its optimizer has made one update.
    model.optimizer.iterations.assign(1)
    return model


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def save_checkpoint(model, folder):
    """One checkpoint through the callback's public hooks, as `fit` calls them."""
    checkpoint = TrainingCheckpoint(folder, save_every_n_steps=1, keep=1)
    checkpoint.set_model(model)
    checkpoint.set_params({"steps": 10})
    checkpoint.on_train_begin()
    checkpoint.on_train_batch_end(0, {"loss": 1.0})


def restore_checkpoint(model, folder):
    checkpoint = TrainingCheckpoint(folder, save_every_n_steps=1)
    checkpoint.set_model(model)
    checkpoint.set_params({"steps": 10})
    checkpoint.on_train_begin()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="3t_tiny")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="JSON file to write (refuses to overwrite one)")
    args = parser.parse_args()
    if args.output and os.path.exists(args.output):
        raise SystemExit(f"{args.output} exists; choose another --output.")
    model = build(args.preset)
    work = tempfile.mkdtemp(prefix="checkpoint_benchmark-")
    try:
        plain = os.path.join(work, "plain.weights.h5")
        times = {
            "save_weights": [],
            "checkpoint_save": [],
            "load_weights": [],
            "checkpoint_restore": [],
        }
        for repeat in range(args.repeats):
            folder = os.path.join(work, f"run{repeat}")
            times["save_weights"].append(timed(lambda: model.save_weights(plain, overwrite=True)))
            times["checkpoint_save"].append(timed(lambda: save_checkpoint(model, folder)))
            times["load_weights"].append(timed(lambda: model.load_weights(plain)))
            times["checkpoint_restore"].append(timed(lambda: restore_checkpoint(model, folder)))
        ((_, saved),) = list_checkpoints(folder)
        size = sum(os.path.getsize(os.path.join(saved, name)) for name in os.listdir(saved))
    finally:
        shutil.rmtree(work)
    median = {key: float(np.median(value)) for key, value in times.items()}
    result = {
        "backend": keras.backend.backend(),
        "preset": args.preset,
        "parameters": model.count_params(),
        "checkpoint_bytes": size,
        "median_seconds": median,
        "save_ratio": median["checkpoint_save"] / median["save_weights"],
        "restore_ratio": median["checkpoint_restore"] / median["load_weights"],
        "times": times,
    }
    print(
        "| backend | preset | checkpoint size | save_weights | checkpoint save | ratio "
        "| load_weights | checkpoint restore | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {result['backend']} | {args.preset} | {size / 2**20:.1f} MiB "
        f"| {median['save_weights']:.3f} s | {median['checkpoint_save']:.3f} s | {result['save_ratio']:.2f} "
        f"| {median['load_weights']:.3f} s | {median['checkpoint_restore']:.3f} s "
        f"| {result['restore_ratio']:.2f} |"
    )
    if args.output:
        with open(args.output, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
