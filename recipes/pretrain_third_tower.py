"""Pretrain the embedded default's third towers and save them as keras-hub presets.

Trains a keras-hub ResNet image classifier (`keras_3t.demo.digit_models.digit_backbone`)
on single-digit scenes of the L labelled digits of the pretrain pool, which no
train / validation / test scene uses, for a fixed budget of steps
(`keras_3t.demo.digit_models.pretrain_third_tower`), and saves it with
`ImageClassifier.save_to_preset`, with `metadata.json` recording the command
and the accuracy on the 500 held-out digits of the validation pool. The
backbone then loads with `keras_hub.models.Backbone.from_preset(path)` like
any keras-hub model; the whole classifier with `ImageClassifier.from_preset(path)`.

- `--task digit` → `saved_models/digit_classifier` (matched: names the digit,
  our analog of a JFT or ImageNet-21k classifier);
- `--task thickness` → `saved_models/thickness_classifier` (mismatched:
  stroke thickness within the digit's class, the analog of Places365).

    KERAS_BACKEND=torch python recipes/pretrain_third_tower.py --task digit
    KERAS_BACKEND=torch python recipes/pretrain_third_tower.py --task thickness
"""

import argparse
import os
import sys

from keras_3t.console import quiet_native_logs  # noqa: E402

# Before TensorFlow loads; KERAS_3T_VERBOSE=1 keeps its native log lines.
quiet_native_logs()

import keras  # noqa: E402

from keras_3t.demo import digit_scenes  # noqa: E402
from keras_3t.demo.digit_models import preset_path  # noqa: E402
from keras_3t.demo.digit_models import pretrain_third_tower  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(digit_scenes.PRETRAINING_TASKS), default="digit")
    parser.add_argument(
        "--labelled-digits",
        type=int,
        default=digit_scenes.DEFAULT_LABELLED_DIGITS,
        help="L, the labelled digits of the pretrain pool",
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="default: saved_models/<task>_classifier")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    output = args.output or preset_path(args.task)
    if os.path.exists(output) and not args.overwrite:
        sys.exit(f"{output} exists; pass --overwrite to replace it.")
    command = (
        f"KERAS_BACKEND={keras.backend.backend()} python recipes/pretrain_third_tower.py "
        + " ".join(sys.argv[1:])
    )
    metadata = pretrain_third_tower(
        args.task,
        output,
        labelled_digits=args.labelled_digits,
        steps=args.steps,
        seed=args.seed,
        command=command,
        overwrite=args.overwrite,
    )
    print(f"held-out accuracy ({args.task}): {metadata['held_out_accuracy']:.4f}")
    print(f"saved {output}")


if __name__ == "__main__":
    main()
