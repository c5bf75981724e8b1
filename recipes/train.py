"""Train any preset on your image-caption data, then save it as a preset.

    KERAS_BACKEND=jax python recipes/train.py --preset 3t_tiny \\
        --data captions.csv --image-root images/ --output runs/train_mine

`--data` is one of:
- a `.csv` / `.tsv` (header with `image` and `caption`) or `.jsonl` file,
  image paths relative to `--image-root`;
- a folder (or glob) of TFRecords written by `keras_3t.data.write_tfrecords`
  (convert once with `--write-tfrecords DIR`, then train from DIR);
- `tfds:NAME[:SPLIT]`, e.g. `tfds:coco_captions:train` (prepared in
  `--tfds-data-dir`; nothing is downloaded unless `--tfds-download`).

The model starts fresh unless `--from-trained` (then from the preset's
trained weights). Each epoch's model is checkpointed to
`OUTPUT/checkpoints/epoch_NNN.keras`, the final one saved with
`save_to_preset` to `OUTPUT/preset` (load it with
`keras_3t.presets.load("OUTPUT/preset")`), the history to
`OUTPUT/history.json`. The backend comes from `KERAS_BACKEND`.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_3t  # noqa: E402
from keras_3t import data  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="3t_tiny", help="a name in keras_3t.presets.names() or a preset folder")
    parser.add_argument("--from-trained", action="store_true", help="start from the preset's trained weights")
    parser.add_argument("--data", required=True)
    parser.add_argument("--image-root", default=".")
    parser.add_argument("--tfds-data-dir", default=None)
    parser.add_argument("--tfds-download", action="store_true")
    parser.add_argument("--write-tfrecords", metavar="DIR", default=None,
                        help="convert --data to TFRecords in DIR, then train from them")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--on-bad-data", choices=data.sources.BAD_DATA_MODES, default="raise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def source(args, bad_data):
    if args.data.startswith("tfds:"):
        name, _, split = args.data[len("tfds:"):].partition(":")
        return data.from_tfds(name, split or "train", data_dir=args.tfds_data_dir,
                              download=args.tfds_download)
    if args.data.endswith((".csv", ".tsv", ".jsonl", ".json")):
        return data.from_caption_file(args.data, args.image_root,
                                      on_bad_data=args.on_bad_data, bad_data=bad_data)
    return data.from_tfrecords(args.data)


def main(argv=None):
    args = parse_args(argv)
    if os.path.isdir(args.output) and os.listdir(args.output) and not args.overwrite:
        sys.exit(f"{args.output} is not empty; pass --overwrite or choose another --output.")
    keras.utils.set_random_seed(args.seed)
    model = keras_3t.presets.load(args.preset, weights=args.from_trained)
    if model.preprocessor is None:
        sys.exit(f"{args.preset} has no tokenizer; save one with the model (see docs/presets.md).")
    image_size = model.image_tower.backbone.input_shape[1]
    bad_data = data.BadDataCounter()
    examples = source(args, bad_data)
    if args.write_tfrecords:
        manifest = data.write_tfrecords(examples, args.write_tfrecords, on_bad_data=args.on_bad_data)
        print(f"wrote {manifest['examples']} examples to {args.write_tfrecords} (skipped {manifest['skipped']})")
        examples = data.from_tfrecords(args.write_tfrecords)
    dataset = data.make_dataset(
        examples, model.preprocessor, image_size, args.batch_size, seed=args.seed,
        on_bad_data=args.on_bad_data, bad_data=bad_data,
    )
    total = args.epochs * args.steps_per_epoch
    model.compile(learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, total_steps=total)
    checkpoints = os.path.join(args.output, "checkpoints")
    os.makedirs(checkpoints, exist_ok=True)
    history = model.fit(
        dataset, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, shuffle=False, verbose=2,
        callbacks=[
            keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "epoch_{epoch:03d}.keras")),
            data.BadDataReport(bad_data),
        ],
    )
    history = {key: [float(v) for v in values] for key, values in history.history.items()}
    with open(os.path.join(args.output, "history.json"), "w") as file:
        json.dump(history, file, indent=2)
    command = f"KERAS_BACKEND={keras.backend.backend()} python recipes/train.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    model.save_to_preset(os.path.join(args.output, "preset"), overwrite=args.overwrite,
                         metadata={"command": command, "data": args.data, "skipped": bad_data.counts()})
    print(f"final loss {history['loss'][-1]:.4f}; skipped {bad_data.counts()}; "
          f"saved {os.path.join(args.output, 'preset')}")
    return history


if __name__ == "__main__":
    main()
