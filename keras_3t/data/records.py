"""The package's TFRecord format: convert once, then train fast many times.

Each record is a `tf.train.Example` with `image` (encoded JPEG or PNG
bytes), `caption` (UTF-8 bytes) and `image_id` (int64). Shards are named
`captions-00000-of-00008.tfrecord`, with a `manifest.json` beside them.
"""

import json
import os

import numpy as np

from keras_3t.data.bad_data import BAD_DATA_MODES
from keras_3t.data.shards import worker_shards

MANIFEST = "manifest.json"


def _shard_name(index, num_shards):
    return f"captions-{index:05d}-of-{num_shards:05d}.tfrecord"


def write_tfrecords(examples, output_dir, num_shards=8, on_bad_data="raise", jpeg_quality=95):
    """Writes examples (from any `keras_3t.data` source) as TFRecord shards.

    Every image is decoded once here, so the shards hold only images that
    decode; encoded images are stored as they are, decoded ones as JPEG.
    Refuses to write into a folder that already holds shards.

    Args:
        examples: a dataset of `{"image", "caption", "image_id"}` (e.g.
            `from_caption_file(...)`, `from_tfds(...)`).
        output_dir: the folder to write.
        num_shards: how many files (spread examples round-robin).
        on_bad_data: `"raise"` on an undecodable image or empty caption, or
            `"skip"` to leave it out (counted in the manifest).
        jpeg_quality: for images that arrive decoded.

    Returns:
        The manifest: `{"examples", "skipped", "shards"}`.

    Example:
    >>> import numpy as np, tensorflow as tf, tempfile
    >>> from keras_3t.data import write_tfrecords, from_tfrecords
    >>> examples = tf.data.Dataset.from_tensor_slices({
    ...     "image": np.zeros((4, 8, 8, 3), "uint8"),
    ...     "caption": ["a", "b", "c", "d"], "image_id": np.arange(4)})
    >>> folder = tempfile.mkdtemp()
    >>> write_tfrecords(examples, folder, num_shards=2)["examples"]
    4
    >>> len(list(from_tfrecords(folder)))
    4
    """
    import tensorflow as tf

    if on_bad_data not in BAD_DATA_MODES:
        raise ValueError(f"on_bad_data must be one of {BAD_DATA_MODES}; got {on_bad_data!r}.")
    if os.path.isdir(output_dir) and any(
        name.endswith(".tfrecord") or name == MANIFEST for name in os.listdir(output_dir)
    ):
        raise FileExistsError(
            f"{output_dir} already holds TFRecord shards; choose an empty folder."
        )
    os.makedirs(output_dir, exist_ok=True)
    shards = [_shard_name(i, num_shards) for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(os.path.join(output_dir, name)) for name in shards]
    written, skipped = 0, {"undecodable_image": 0, "empty_caption": 0}
    try:
        for index, example in enumerate(examples.as_numpy_iterator()):
            image, caption = example["image"], example["caption"]
            problem = _problem(image, caption)
            if problem:
                if on_bad_data == "raise":
                    where = f", {example['source'].decode()}" if "source" in example else ""
                    raise ValueError(
                        f"Example {index} (image_id {int(example['image_id'])}{where}): {problem}. "
                        "Pass on_bad_data='skip' to leave such examples out."
                    )
                skipped["undecodable_image" if "image" in problem else "empty_caption"] += 1
                continue
            if not isinstance(image, bytes):
                image = tf.io.encode_jpeg(image, quality=jpeg_quality).numpy()
            record = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                        "caption": tf.train.Feature(bytes_list=tf.train.BytesList(value=[caption])),
                        "image_id": tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[int(example["image_id"])])
                        ),
                    }
                )
            )
            writers[written % num_shards].write(record.SerializeToString())
            written += 1
    except BaseException:
        # Leave no partial shards behind: the folder is as it was.
        for writer, name in zip(writers, shards):
            writer.close()
            os.remove(os.path.join(output_dir, name))
        raise
    for writer in writers:
        writer.close()
    manifest = {"examples": written, "skipped": skipped, "shards": shards}
    with open(os.path.join(output_dir, MANIFEST), "w") as file:
        json.dump(manifest, file, indent=2)
    return manifest


def _problem(image, caption):
    import tensorflow as tf

    if not caption.strip():
        return "empty caption"
    if isinstance(image, bytes):
        try:
            tf.io.decode_image(image, channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError):
            return "undecodable image"
    elif np.asarray(image).ndim != 3:
        return f"image of shape {np.asarray(image).shape}, expected (height, width, channels)"
    return None


def from_tfrecords(path, num_shards=1, shard_index=0):
    """Examples from TFRecords written by `write_tfrecords`.

    Each example's `"source"` says where it was read: `"<file>, record
    index <n>"` (counted from 0 in its file).

    Args:
        path: the folder `write_tfrecords` wrote, or a glob of shard files.
        num_shards, shard_index: read every `num_shards`-th file starting at
            `shard_index` (one input pipeline per worker). Needs at least
            `num_shards` files.
    """
    import tensorflow as tf

    pattern = os.path.join(path, "*.tfrecord") if os.path.isdir(path) else path
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {pattern}.")
    files = worker_shards(files, num_shards, shard_index, "write_tfrecords(num_shards=...)")
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "caption": tf.io.FixedLenFeature([], tf.string),
        "image_id": tf.io.FixedLenFeature([], tf.int64),
    }

    def records(file):
        # Each record with its file and index, for errors about its example
        # (zipped, not mapped: no function call per record).
        return tf.data.Dataset.zip(
            (
                tf.data.TFRecordDataset(file),
                tf.data.Dataset.from_tensors(file).repeat(),
                tf.data.Dataset.range(2**62),
            )
        )

    def parse(record, file, index):
        source = tf.strings.join([file, ", record index ", tf.strings.as_string(index)])
        return {**tf.io.parse_single_example(record, features), "source": source}

    return (
        tf.data.Dataset.from_tensor_slices(files)
        .interleave(
            records,
            cycle_length=min(len(files), 4),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    )
