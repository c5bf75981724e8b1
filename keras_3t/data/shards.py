"""img2dataset's outputs as streaming sources: webdataset tars, parquet, TFRecords.

img2dataset (https://github.com/rom1504/img2dataset) downloads a URL list
into numbered shards, in one of three formats:

- `webdataset`: `00000.tar`, a tar of `{key}.jpg` (or `.png`, `.webp`),
  `{key}.txt` (the caption) and `{key}.json` per example, with a
  `00000.parquet` of every URL's status beside it;
- `parquet`: `00000.parquet` with the columns `key`, `txt`, the image bytes
  (a column named after the image format, `jpg` by default), `status` and
  more; rows of failed downloads have no image;
- `tfrecord`: `00000.tfrecord` of `tf.train.Example`s with the features
  `key`, `txt`, the image bytes (`jpg`, ...) and the metadata.

`from_img2dataset` reads any of them as a stream: shards are read a few at
a time (interleaved, `cycle_length` of them in parallel), so memory does
not grow with the number of shards or examples. Each worker reads its own
shards (`num_shards`, `shard_index`, or a `tf.distribute.InputContext`).
"""

import glob
import logging
import os
import re
import tarfile

import tensorflow as tf

from keras_3t.data.bad_data import check_bad_data_mode
from keras_3t.data.third_tower_cache import HASH_BUCKETS

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
FORMATS = {".tar": "webdataset", ".parquet": "parquet", ".tfrecord": "tfrecord"}
# An img2dataset key is its shard number and position, in digits: the
# image_id is that number. Other keys are hashed into int64.
_DIGITS = r"[0-9]{1,18}"


class UnreadableShardError(ValueError):
    """A shard file that is truncated or corrupt."""


def expand_shards(shards):
    """Shard files from a pattern, a list of patterns, or a folder.

    A pattern may hold brace ranges as webdataset and open_clip write them
    (`shards/{00000..00099}.tar`: zero-padded, inclusive) and glob
    wildcards (`shards/*.tar`). A folder means its `.tar` files, or failing
    those its `.tfrecord` files, or failing those its `.parquet` files
    (img2dataset writes a `.parquet` of statuses beside each `.tar` and
    `.tfrecord` shard).

    Args:
        shards: a string or a list of strings.

    Returns:
        The existing shard files, sorted within each pattern, each once.

    Example:
    >>> import os, tempfile
    >>> from keras_3t.data.shards import expand_shards
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("00000.tar", "00001.tar", "00000.parquet"):
    ...     open(os.path.join(folder, name), "w").close()
    >>> [os.path.basename(f) for f in expand_shards(os.path.join(folder, "{00000..00001}.tar"))]
    ['00000.tar', '00001.tar']
    >>> [os.path.basename(f) for f in expand_shards(folder)]
    ['00000.tar', '00001.tar']
    """
    patterns = [shards] if isinstance(shards, str) else list(shards)
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = []
            for extension in (".tar", ".tfrecord", ".parquet"):
                found = sorted(glob.glob(os.path.join(pattern, "*" + extension)))
                if found:
                    break
            if not found:
                raise FileNotFoundError(f"{pattern} holds no .tar, .tfrecord or .parquet shards.")
            files += found
            continue
        for expanded in _expand_braces(pattern):
            matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
            missing = [match for match in matches if not os.path.isfile(match)]
            if missing or not matches:
                raise FileNotFoundError(
                    f"No shard file {missing[0] if missing else expanded} (from {pattern!r})."
                )
            files += matches
    return list(dict.fromkeys(files))


def _expand_braces(pattern):
    """`a{00..02}b` → `a00b a01b a02b`; `a{x,y}b` → `axb ayb`; nested left to right."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail, body = pattern[: match.start()], pattern[match.end() :], match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        width = len(first) if first.startswith("0") else 0
        choices = [f"{i:0{width}d}" for i in range(int(first), int(last) + 1)]
        if not choices:
            raise ValueError(f"Empty shard range {{{body}}} in {pattern!r}.")
    else:
        choices = body.split(",")
    return [expanded for choice in choices for expanded in _expand_braces(head + choice + tail)]


def shard_format(files):
    """`"webdataset"`, `"parquet"` or `"tfrecord"`: the format all `files` share."""
    formats = {FORMATS.get(os.path.splitext(f)[1]) for f in files}
    if None in formats or len(formats) != 1:
        raise ValueError(
            "Shards must all be .tar (webdataset), .parquet or .tfrecord files; got "
            f"{sorted({os.path.splitext(f)[1] or f for f in files})}."
        )
    return formats.pop()


def worker_shards(
    files,
    num_shards=1,
    shard_index=0,
    write_more="img2dataset: fewer examples per shard, --number_sample_per_shard",
):
    """Every `num_shards`-th file from `shard_index`: one worker's own shards.

    Args:
        files: the sorted shard files.
        num_shards, shard_index: how many workers, and this one's index.
        write_more: how to write more shards, as the error says it.

    Raises:
        ValueError: fewer files than workers (a worker would read nothing),
            or `shard_index` out of range.

    Example:
    >>> from keras_3t.data.shards import worker_shards
    >>> worker_shards(["a.tar", "b.tar", "c.tar"], num_shards=2, shard_index=1)
    ['b.tar']
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, {num_shards}); got {shard_index}.")
    if len(files) < num_shards:
        raise ValueError(
            f"{len(files)} shard file(s) cannot be split over {num_shards} workers: each "
            f"worker reads its own files. Write at least as many shards as workers "
            f"({write_more})."
        )
    return files[shard_index::num_shards]


def from_img2dataset(
    shards,
    num_shards=1,
    shard_index=0,
    input_context=None,
    cycle_length=4,
    on_bad_data="raise",
    bad_data=None,
    third_tower_features=None,
):
    """Examples `{"image", "caption", "image_id", "key", "source"}` from img2dataset's shards.

    The format (webdataset, parquet, TFRecord) follows from the files'
    extensions. `image` is the encoded bytes as img2dataset stored them,
    `caption` the `.txt` / `txt` field, `key` img2dataset's key and
    `image_id` the key as a number (keys that are not digits are hashed).
    `source` names the shard and the key (`"shards/00003.tar, key
    000030017"`), so `make_dataset`'s errors and counts of bad examples
    (`on_bad_data`) name both. A record without a caption gets an empty
    one and a record without an image an empty image, which `make_dataset`
    then reports or skips as it does any empty caption or undecodable
    image. Parquet rows of downloads that failed (no image: img2dataset
    keeps them to record the failure) are left out; its `*_stats.json`
    counts them.

    A damaged shard (a truncated or corrupt tar, parquet or TFRecord file)
    stops the dataset as it is read, with an `InvalidArgumentError` whose
    message begins `UnreadableShardError: <shard>: …` and names the last
    key read before the damage; or with `on_bad_data="skip"` the records
    read before the damage are kept, a warning is logged and the shard is
    counted in `bad_data` as `"unreadable_shard"`.

    Args:
        shards: a pattern (`"shards/{00000..00099}.tar"`, `"shards/*.tar"`),
            a list of them, or img2dataset's output folder (see
            `expand_shards`).
        num_shards, shard_index: read every `num_shards`-th shard file from
            `shard_index`: one worker's own files. Pass `num_shards=1` to
            `make_dataset` then (its sharding is by example).
        input_context: a `tf.distribute.InputContext`, instead of
            `num_shards` and `shard_index`.
        cycle_length: shards read at once, interleaved.
        on_bad_data: `"raise"` or `"skip"`, for damaged shards (pass the
            same to `make_dataset` for bad examples).
        bad_data: a `keras_3t.data.BadDataCounter`, needed with `"skip"`.
        third_tower_features: `FeatureShards` (`load_feature_shards`): each
            example also carries `"third_features"`, its row of the frozen
            towers' features read from the feature shard beside its data
            shard, and the model skips its frozen backbones (see
            `keras_3t.data.feature_shards`).

    Example:
    >>> import io, os, tarfile, tempfile
    >>> import numpy as np, tensorflow as tf
    >>> from keras_3t.data import from_img2dataset
    >>> folder = tempfile.mkdtemp()
    >>> jpeg = tf.io.encode_jpeg(np.zeros((8, 8, 3), "uint8")).numpy()
    >>> with tarfile.open(os.path.join(folder, "00000.tar"), "w") as tar:
    ...     for name, data in [("000000000.jpg", jpeg), ("000000000.txt", b"a black square")]:
    ...         info = tarfile.TarInfo(name)
    ...         info.size = len(data)
    ...         tar.addfile(info, io.BytesIO(data))
    >>> example = next(iter(from_img2dataset(os.path.join(folder, "00000.tar"))))
    >>> example["caption"].numpy(), int(example["image_id"])
    (b'a black square', 0)
    """
    check_bad_data_mode(on_bad_data, bad_data)
    files = expand_shards(shards)
    if input_context is not None:
        num_shards, shard_index = (
            input_context.num_input_pipelines,
            input_context.input_pipeline_id,
        )
    files = worker_shards(files, num_shards, shard_index)
    records = RECORDS[shard_format(files)]
    if third_tower_features is not None:
        third_tower_features.check_shards(files)
    read = _generated_records(records, on_bad_data, bad_data, third_tower_features)
    examples = tf.data.Dataset.from_tensor_slices(files).interleave(
        read,
        cycle_length=min(len(files), cycle_length),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return examples.map(_with_id_and_source, num_parallel_calls=tf.data.AUTOTUNE)


def _record_signature(third_tower_features):
    signature = {
        "image": tf.TensorSpec([], tf.string),
        "caption": tf.TensorSpec([], tf.string),
        "key": tf.TensorSpec([], tf.string),
        "shard": tf.TensorSpec([], tf.string),
    }
    if third_tower_features is not None:
        signature["third_features"] = third_tower_features.signature()
    return signature


def _with_id_and_source(record):
    key = record["key"]
    image_id = tf.cond(
        tf.strings.regex_full_match(key, _DIGITS),
        lambda: tf.strings.to_number(key, tf.int64),
        lambda: tf.strings.to_hash_bucket_fast(key, HASH_BUCKETS),
    )
    example = {
        "image": record["image"],
        "caption": record["caption"],
        "image_id": image_id,
        "key": key,
        "source": tf.strings.join([record["shard"], ", key ", key]),
    }
    if "third_features" in record:
        example["third_features"] = record["third_features"]
    return example


def tar_records(path):
    """`(key, image, caption)` bytes of each example of a webdataset tar, streamed.

    Members are grouped by key, as webdataset groups them: consecutive
    members whose names agree up to the first dot of the file name. A
    missing image or caption is `b""`.

    Raises:
        UnreadableShardError: the tar is truncated or corrupt, naming the
            shard and the last key read before the damage.
    """
    key, fields = None, {}

    def record():
        image = next((fields[e] for e in IMAGE_EXTENSIONS if e in fields), b"")
        return key.encode(), image, fields.get("txt", b"")

    try:
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, name = os.path.split(member.name)
                stem, _, extension = name.partition(".")
                member_key = os.path.join(folder, stem) if folder else stem
                if member_key != key:
                    if key is not None:
                        yield record()
                    key, fields = member_key, {}
                if extension.lower() in (*IMAGE_EXTENSIONS, "txt"):
                    fields[extension.lower()] = tar.extractfile(member).read()
            # tarfile ends quietly at a header cut short; a whole tar ends
            # with an end-of-archive marker of two zero blocks.
            if os.path.getsize(path) - tar.offset < 2 * tarfile.BLOCKSIZE:
                raise tarfile.ReadError("truncated: no end-of-archive marker")
            if key is not None:
                yield record()
    except (tarfile.TarError, EOFError, OSError) as error:
        where = f"after key {key}" if key is not None else "before its first record"
        raise UnreadableShardError(
            f"{path}: unreadable tar shard ({error}), {where}. Download the shard again or "
            "leave it out of the shard list."
        ) from None


def _generated_records(records, on_bad_data, bad_data, third_tower_features):
    """One shard's dataset from `records(path)`, a Python generator of `(key, image, caption)`."""

    def generate(path):
        path = path.decode()
        rows = records(path)
        if third_tower_features is not None:
            rows = third_tower_features.attach(path, rows)
        try:
            for key, image, caption, *features in rows:
                record = {"image": image, "caption": caption, "key": key, "shard": path}
                if features:
                    record["third_features"] = features[0]
                yield record
        except UnreadableShardError as error:
            if on_bad_data == "raise":
                raise
            logging.warning("skipped the rest of a damaged shard: %s", error)
            bad_data.add("unreadable_shard", path)

    # AutoGraph cannot convert a function that builds on a Python generator.
    @tf.autograph.experimental.do_not_convert
    def read(path):
        return tf.data.Dataset.from_generator(
            generate, output_signature=_record_signature(third_tower_features), args=(path,)
        )

    return read


def parquet_records(path, batch_rows=256):
    """`(key, image, caption)` bytes of each downloaded row of an img2dataset parquet.

    Reads `batch_rows` rows at a time. Rows without an image (downloads
    that failed) are left out.

    Raises:
        UnreadableShardError: the file is not readable parquet.
        ValueError: it has no image or key column.
    """
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
        raise UnreadableShardError(f"{path}: not a readable parquet shard ({error}).") from None
    names = file.schema_arrow.names
    image_column = next((e for e in IMAGE_EXTENSIONS if e in names), None)
    if image_column is None or "key" not in names:
        raise ValueError(
            f"{path}: no image column ({', '.join(IMAGE_EXTENSIONS)}) or no 'key' column; "
            f"its columns are {names}. Is it an img2dataset --output_format parquet shard?"
        )
    # img2dataset's parquet keeps the caption in "caption" (its metadata);
    # "txt" as in its other formats is read where present.
    caption_column = next((c for c in ("txt", "caption") if c in names), None)
    columns = ["key", image_column] + ([caption_column] if caption_column else [])
    batches = file.iter_batches(batch_size=batch_rows, columns=columns)
    while True:
        try:
            batch = next(batches, None)
        except Exception as error:  # a damaged row group, as pyarrow reports it
            raise UnreadableShardError(f"{path}: unreadable parquet row group ({error}).") from None
        if batch is None:
            return
        rows = batch.to_pydict()
        captions = rows.get(caption_column, [None] * batch.num_rows)
        for key, image, caption in zip(rows["key"], rows[image_column], captions):
            if image is None:
                continue
            yield key.encode(), image, (caption or "").encode()


def tfrecord_records(path):
    """`(key, image, caption)` bytes of each example of an img2dataset TFRecord file.

    Raises:
        UnreadableShardError: a record is truncated or corrupt.
    """
    key = None
    try:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            feature = tf.train.Example.FromString(record).features.feature

            def value(name):
                values = feature[name].bytes_list.value if name in feature else []
                return values[0] if values else b""

            key = value("key")
            # One image feature is set, named after its format; "txt" as
            # img2dataset writes it, else its metadata's "caption".
            image = next((value(e) for e in IMAGE_EXTENSIONS if value(e)), b"")
            yield key, image, value("txt") or value("caption")
    except tf.errors.DataLossError as error:
        where = f"after key {key.decode()}" if key is not None else "before its first record"
        raise UnreadableShardError(
            f"{path}: unreadable TFRecord shard ({error.message}), {where}."
        ) from None


RECORDS = {"webdataset": tar_records, "parquet": parquet_records, "tfrecord": tfrecord_records}
