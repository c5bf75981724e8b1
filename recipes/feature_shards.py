"""Write the frozen towers' features of img2dataset's shards as feature shards.

    KERAS_BACKEND=jax python recipes/feature_shards.py --preset 3t_tiny \\
        --data 'shards/{00000..00099}.tar' --output shards_features

One feature shard per data shard (`keras_3t.data.write_feature_shards`):
the same examples in the same order, keyed, beside a `manifest.json` with
the towers' fingerprints. Each is written atomically and skipped when it
exists, so after a crash the same command resumes. Split the work over N
processes or hosts that share the folder: `--worker i --workers N` (i from
0) in each. Then train from the data and its features:

    KERAS_BACKEND=jax python recipes/train.py --preset 3t_tiny \\
        --data 'shards/{00000..00099}.tar' --third-tower-features shards_features \\
        --output runs/train_shards

`--preset` and `--from-trained` must be those the training run uses: the
features belong to the preset's frozen towers.
"""

import argparse
import sys
import time

from keras_3t.console import quiet_native_logs

# Before TensorFlow loads; KERAS_3T_VERBOSE=1 keeps its native log lines.
quiet_native_logs()

import keras_3t  # noqa: E402
from keras_3t import data  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--preset", default="3t_tiny", help="a 3T name in keras_3t.presets.names() or a folder"
    )
    parser.add_argument("--from-trained", action="store_true", help="the preset's trained weights")
    parser.add_argument("--data", required=True, help="img2dataset's shards: a folder or pattern")
    parser.add_argument("--output", required=True, help="the folder of feature shards")
    parser.add_argument("--worker", type=int, default=0, help="this process's index, from 0")
    parser.add_argument("--workers", type=int, default=1, help="how many processes share the work")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--on-bad-data", choices=data.bad_data.BAD_DATA_MODES, default="raise")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = keras_3t.presets.load(args.preset, weights=args.from_trained)
    if model.objective != "3t":
        sys.exit(f"{args.preset} is {model.objective!r}: feature shards are for 3T presets.")
    image_size = model.image_tower.backbone.input_shape[1]
    start = time.perf_counter()
    try:
        done = data.write_feature_shards(
            model,
            args.data,
            args.output,
            image_size,
            worker=args.worker,
            workers=args.workers,
            batch_size=args.batch_size,
            on_bad_data=args.on_bad_data,
        )
    except (OSError, ValueError) as error:
        sys.exit(str(error))
    print(
        f"worker {args.worker} of {args.workers}: wrote {len(done['written'])} feature "
        f"shard(s), found {len(done['skipped'])} done, in {time.perf_counter() - start:.1f} s"
    )
    return done


if __name__ == "__main__":
    main()
