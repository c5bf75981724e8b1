"""Pretrain the embedded default's third towers and save them as keras-hub presets.

Trains a keras-hub ResNet image classifier (`keras_3t.digit_models.digit_backbone`)
on single-digit scenes from the pretrain pool of source digits, which no
train / validation / test scene uses, and saves it with
`ImageClassifier.save_to_preset` under `saved_models/<name>/`, with
`metadata.json` recording the command and the held-out accuracy. The backbone
then loads with `keras_hub.models.Backbone.from_preset(path)` like any
keras-hub model; the whole classifier with `ImageClassifier.from_preset(path)`.

- `--task digit` → `saved_models/digit_classifier` (matched: names the digit,
  the analog of an ImageNet / JFT classifier);
- `--task thickness` → `saved_models/thickness_classifier` (mismatched:
  stroke thickness within the digit's class, the analog of Places365).

    KERAS_BACKEND=torch python recipes/pretrain_third_tower.py --task digit
    KERAS_BACKEND=torch python recipes/pretrain_third_tower.py --task thickness
"""

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

from keras_3t.datasets import digit_scenes  # noqa: E402
from keras_3t.digit_models import digit_backbone  # noqa: E402
from keras_3t.digit_models import held_out_accuracy  # noqa: E402
from keras_3t.digit_models import preset_path  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(digit_scenes.PRETRAINING_TASKS), default="digit")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--copies", type=int, default=4, help="scenes per source digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="default: saved_models/<preset>")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    output = args.output or preset_path(args.task)
    if os.path.exists(output) and not args.overwrite:
        sys.exit(f"{output} exists; pass --overwrite to replace it.")
    keras.utils.set_random_seed(args.seed)

    train = digit_scenes.pretraining_scenes(args.task, copies=args.copies, seed=args.seed)
    classifier = keras_hub.models.ResNetImageClassifier(
        backbone=digit_backbone(),
        num_classes=len(train["class_names"]),
        activation=None,
    )
    steps = args.epochs * int(np.ceil(len(train["labels"]) / 128))
    classifier.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=3e-3, warmup_steps=steps // 10)
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    classifier.fit(train["images"], train["labels"], batch_size=128, epochs=args.epochs, shuffle=True)
    accuracy = held_out_accuracy(classifier, args.task)
    print(f"held-out accuracy ({args.task}): {accuracy:.4f}")

    # A fresh optimizer: the preset keeps the weights, not AdamW's state.
    classifier.compile()
    if os.path.exists(output):
        shutil.rmtree(output)
    classifier.save_to_preset(output)
    metadata = {
        "task": args.task,
        "class_names": train["class_names"],
        "held_out_accuracy": accuracy,
        "backend": keras.backend.backend(),
        "training_scenes": len(train["labels"]),
        "training_seconds": round(time.time() - start),
        "command": f"KERAS_BACKEND={keras.backend.backend()} python recipes/pretrain_third_tower.py "
        + " ".join(sys.argv[1:]),
    }
    with open(os.path.join(output, "metadata.json"), "w") as file:
        json.dump(metadata, file, indent=2)
    print(f"saved {output}")


if __name__ == "__main__":
    main()
