"""Memory of the training input: feature shards streamed beside the data, against the in-memory cache.

For each N in `--sizes`, N examples in webdataset shards of `--shard-size`
(small synthetic JPEGs and captions, as img2dataset writes them) with
`--feature-dim` float32 features each, read two ways:

- **shards**: `from_img2dataset(..., third_tower_features=...)`, each data
  shard read with its feature shard (`keras_3t.data.feature_shards`);
- **cache**: `ThirdTowerCache`, every feature in memory (what
  `load_third_tower_cache` builds), the same data shards.

Each way and N runs in a process of its own, which reads `--batches`
batches of `make_dataset` (central crops, the model's tokenizer) and
reports its peak resident memory (`ru_maxrss`) minus its resident memory
just before the input was built: the input's own memory. The shards and
features are written once into `--workdir` and reused.

    python benchmarks/input_memory.py --sizes 10000 100000 1000000
"""

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tarfile

import numpy as np

IMAGE_SIZE = 56
DISTINCT_IMAGES = 16


def _rss_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _images():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    return [
        tf.io.encode_jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).numpy()
        for _ in range(DISTINCT_IMAGES)
    ]


def key_of(shard, index):
    return f"{shard:05d}{index:06d}"


def write_data(workdir, count, shard_size, feature_dim):
    """Data shards and feature shards for `count` examples, written once."""
    from keras_3t.data.feature_shards import feature_shard_name
    from keras_3t.data.feature_shards import image_fingerprint

    images = _images()
    data_dir, features_dir = os.path.join(workdir, "data"), os.path.join(workdir, "features")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(features_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    for shard in range(-(-count // shard_size)):
        path = os.path.join(data_dir, f"{shard:05d}.tar")
        if os.path.exists(path):
            continue
        rows = range(min(shard_size, count - shard * shard_size))
        keys = [key_of(shard, i) for i in rows]
        with tarfile.open(path + ".tmp", "w") as tar:
            for i, key in zip(rows, keys):
                for name, payload in (
                    (f"{key}.jpg", images[i % DISTINCT_IMAGES]),
                    (f"{key}.txt", b"a 3 above a 7"),
                ):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        np.savez(
            os.path.join(features_dir, feature_shard_name(path)),
            keys=np.asarray([k.encode() for k in keys]),
            image_hashes=np.asarray(
                [image_fingerprint(images[i % DISTINCT_IMAGES]) for i in rows], "int64"
            ),
            features=rng.standard_normal((len(keys), feature_dim)).astype("float32"),
        )
        os.replace(path + ".tmp", path)
    return data_dir, features_dir


def measure(way, workdir, count, shard_size, feature_dim, batches, batch_size):
    """The input's peak memory in MB, in this process: build it, read `batches` batches."""
    import tensorflow as tf

    import keras_3t
    from keras_3t import data
    from keras_3t.data.feature_shards import FeatureShards
    from keras_3t.data.third_tower_cache import ThirdTowerCache
    from keras_3t.data.third_tower_cache import image_hash

    preprocessor = keras_3t.presets.load("clip_tiny").preprocessor
    data_dir = os.path.join(workdir, "data")
    shards = [os.path.join(data_dir, f"{s:05d}.tar") for s in range(-(-count // shard_size))]
    images = _images()
    before = _rss_mb()
    if way == "shards":
        cache = FeatureShards(
            os.path.join(workdir, "features"),
            IMAGE_SIZE,
            {"third": ("features", feature_dim)},
            single=True,
        )
        examples = data.from_img2dataset(shards, third_tower_features=cache)
    else:
        features, ids = [], []
        for shard in shards:
            with np.load(os.path.join(workdir, "features", os.path.basename(shard) + ".npz")) as f:
                features.append(f["features"])
                ids.append([int(k) for k in f["keys"]])
        ids = np.concatenate(ids).astype("int64")
        hashes = [int(image_hash(tf.constant(image))) for image in images]
        positions = ids % 10**6
        cache = ThirdTowerCache(
            np.concatenate(features),
            ids,
            np.asarray([hashes[p % DISTINCT_IMAGES] for p in positions], "int64"),
            IMAGE_SIZE,
            workdir,
        )
        del features
        examples = data.from_img2dataset(shards)
    dataset = data.make_dataset(
        examples,
        preprocessor,
        IMAGE_SIZE,
        batch_size,
        seed=0,
        random_crop_scale=None,
        third_tower_cache=cache,
    )
    for batch in dataset.take(batches):
        assert batch["third_features"].shape == (batch_size, feature_dim)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak - before


def run(args):
    """Every (N, way) in a child process; returns the table's rows."""
    write_data(args.workdir, max(args.sizes), args.shard_size, args.feature_dim)
    rows = []
    for count in args.sizes:
        row = {"examples": count}
        for way in ("shards", "cache"):
            child = subprocess.run(
                [sys.executable, __file__, "--child", way, *sys_args(args, count)],
                capture_output=True,
                text=True,
                check=True,
            )
            row[way] = json.loads(child.stdout.strip().splitlines()[-1])["mb"]
        row["features_mb"] = count * args.feature_dim * 4 / 2**20
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def sys_args(args, count):
    return [
        "--workdir", args.workdir,
        "--sizes", str(count),
        "--shard-size", str(args.shard_size),
        "--feature-dim", str(args.feature_dim),
        "--batches", str(args.batches),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip


def markdown(rows):
    lines = [
        "| examples | features on disk (MB) | feature shards: input memory (MB) "
        "| in-memory cache: input memory (MB) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['examples']:,} | {row['features_mb']:,.0f} | {row['shards']:,.0f} "
            f"| {row['cache']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--feature-dim", type=int, default=768)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workdir", default=os.path.join("runs", "input_memory"))
    parser.add_argument("--child", choices=("shards", "cache"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mb = measure(
            args.child,
            args.workdir,
            args.sizes[0],
            args.shard_size,
            args.feature_dim,
            args.batches,
            args.batch_size,
        )
        print(json.dumps({"mb": mb}))
        return None
    rows = run(args)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
