"""Where image-caption examples come from: TFDS, caption files, TFRecords.

Every source is a `tf.data.Dataset` of examples `{"image", "caption",
"image_id"}`: `image` is encoded bytes (a string) or a decoded uint8
`(height, width, 3)` array, `caption` a string, `image_id` an int64 shared by
every caption of one image. With `per_caption=False` an example holds every
caption of its image as `"captions"` instead (retrieval evaluation). Sources
that read files also give `"source"`, a string saying where the example was
read (`"captions.csv, line 9: images/x.jpg"`), which `make_dataset` names in
its errors about the example and does not pass on.
"""

import csv
import json
import logging
import os

import numpy as np
import tensorflow as tf

from keras_3t.data.bad_data import check_bad_data_mode


def _field(example, key):
    """`example[key]`, where "a/b" may also mean example["a"]["b"]."""
    if key in example:
        return example[key]
    value = example
    for part in key.split("/"):
        value = value[part]
    return value


def from_tfds(
    name,
    split,
    image_key="image",
    caption_key="captions/text",
    id_key="image/id",
    per_caption=True,
    data_dir=None,
    download=False,
):
    """Examples from a TFDS image-caption builder, e.g. `coco_captions`.

    Args:
        name: the TFDS builder name.
        split: e.g. `"train"`, `"val[:1000]"`.
        image_key: the image feature.
        caption_key: the captions feature (a string or a sequence of them);
            `"a/b"` reads a nested feature.
        id_key: an int image id feature, or None to number images in order.
        per_caption: True: one example per caption (training); False: one
            per image with all its captions as `"captions"` (retrieval).
        data_dir: where TFDS keeps prepared data sets.
        download: bool. Let TFDS download and prepare the data set if it is
            not prepared in `data_dir` (needs network access).

    Example:
    >>> import tensorflow_datasets as tfds
    >>> from keras_3t.data import from_tfds
    >>> with tfds.testing.mock_data(num_examples=2,
    ...         policy=tfds.testing.MockPolicy.USE_CODE):
    ...     examples = from_tfds("coco_captions", "train")
    ...     sorted(next(iter(examples)))
    ['caption', 'image', 'image_id']
    """
    import tensorflow_datasets as tfds

    try:
        dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
    except (AssertionError, OSError, tfds.core.registered.DatasetNotFoundError) as error:
        raise FileNotFoundError(
            f"The TFDS data set {name!r} (split {split!r}) is not prepared in "
            f"{data_dir or tfds.core.constants.DATA_DIR}: {error}. Prepare it once "
            "with network access (`tfds build " + name + "`, or "
            "from_tfds(..., download=True)) and pass its data_dir."
        ) from None

    def convert(index, example):
        captions = tf.reshape(_field(example, caption_key), [-1])
        image_id = tf.cast(_field(example, id_key), tf.int64) if id_key else index
        out = {"image": _field(example, image_key), "image_id": image_id}
        if per_caption:
            count = tf.shape(captions)[0]
            return tf.data.Dataset.from_tensor_slices(
                {
                    "image": tf.repeat(out["image"][None], count, axis=0),
                    "caption": captions,
                    "image_id": tf.repeat(image_id, count),
                }
            )
        return {**out, "captions": captions}

    dataset = dataset.enumerate()
    if per_caption:
        return dataset.flat_map(convert)
    return dataset.map(convert)


def read_caption_records(path, columns, hint=""):
    """Rows of a CSV, TSV or JSON-lines caption file: `[(line, record)]`.

    Blank JSON lines are left out. Every row must have every name in
    `columns`; the error names the row, the missing fields and `hint` (for
    example the command-line options that set them).

    Args:
        path: a `.csv` / `.tsv` file with a header, or a `.jsonl` file of
            one object per line.
        columns: the field names every row needs.
        hint: appended to the missing-field error.

    Example:
    >>> import os, tempfile
    >>> from keras_3t.data.sources import read_caption_records
    >>> path = os.path.join(tempfile.mkdtemp(), "captions.csv")
    >>> _ = open(path, "w").write("image,caption\\na.png,a 3\\n")
    >>> read_caption_records(path, ["image", "caption"])
    [(2, {'image': 'a.png', 'caption': 'a 3'})]
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No caption file at {path}.")
    rows = []
    if path.endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as file:
            for line, text in enumerate(file, start=1):
                if not text.strip():
                    continue
                try:
                    rows.append((line, json.loads(text)))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}, line {line}: not valid JSON ({error}).") from None
    elif path.endswith((".csv", ".tsv")):
        with open(path, encoding="utf-8", newline="") as file:
            delimiter = "\t" if path.endswith(".tsv") else ","
            rows = list(enumerate(csv.DictReader(file, delimiter=delimiter), start=2))
    else:
        raise ValueError(f"{path}: caption files must be .csv, .tsv or .jsonl.")
    for line, record in rows:
        missing = [c for c in columns if not isinstance(record, dict) or c not in record]
        if missing:
            raise ValueError(
                f"{path}, line {line}: no {missing} field; each row needs "
                f"{' and '.join(repr(c) for c in columns)}{hint}."
            )
    return rows


def read_caption_file(path, image_root, image_column="image", caption_column="caption"):
    """Rows of a CSV or JSON-lines caption file: `[(line, image path, caption)]`.

    CSV needs a header with `image_column` and `caption_column`; JSON lines
    need an object per line with those keys. Image paths are relative to
    `image_root` (or absolute).
    """
    rows = read_caption_records(path, [image_column, caption_column])
    return [
        (line, os.path.join(image_root, str(row[image_column])), str(row[caption_column] or ""))
        for line, row in rows
    ]


def from_caption_file(
    path,
    image_root,
    image_column="image",
    caption_column="caption",
    per_caption=True,
    on_bad_data="raise",
    bad_data=None,
):
    """Examples from a CSV / JSON-lines file of (image path, caption) rows.

    Rows naming the same image share an `image_id`. Image files are checked
    here: a missing one raises `FileNotFoundError` naming the row, or with
    `on_bad_data="skip"` is dropped and counted in `bad_data`. Undecodable
    images and empty captions are caught by `make_dataset`, whose errors
    name the row from each example's `"source"`: `"<path>, line <line>:
    <image file>"` (with `per_caption=False`, the first line naming the
    image).

    Args:
        path: a `.csv` / `.tsv` (with a header) or `.jsonl` file.
        image_root: the folder image paths are relative to.
        image_column, caption_column: the field names.
        per_caption: as in `from_tfds`.
        on_bad_data: `"raise"` or `"skip"`.
        bad_data: a `keras_3t.data.BadDataCounter`; needed with `"skip"`.
    """
    check_bad_data_mode(on_bad_data, bad_data)
    images, captions, ids, lines, missing = [], [], [], [], []
    id_of = {}
    for line, image, caption in read_caption_file(path, image_root, image_column, caption_column):
        if not os.path.isfile(image):
            missing.append((line, image))
            continue
        images.append(image)
        captions.append(caption)
        ids.append(id_of.setdefault(image, len(id_of)))
        lines.append(line)
    if missing:
        line, image = missing[0]
        if on_bad_data == "raise":
            raise FileNotFoundError(
                f"{path}, line {line}: image file {image} does not exist "
                f"({len(missing)} row(s) name missing files). Fix the rows, or "
                "pass on_bad_data='skip' to drop and count them."
            )
        bad_data.add("missing_file", [image for _, image in missing])
        logging.warning(
            "%s: skipped %d row(s) naming missing image files, e.g. line %d: %s",
            path,
            len(missing),
            line,
            image,
        )
    if not images:
        raise ValueError(f"{path} has no usable rows.")
    if per_caption:
        columns = {
            "image": images,
            "caption": captions,
            "image_id": np.asarray(ids, "int64"),
            "line": np.asarray(lines, "int64"),
        }
    else:
        grouped, first_line = {}, {}
        for image, caption, line in zip(images, captions, lines):
            grouped.setdefault(image, []).append(caption)
            first_line.setdefault(image, line)
        paths = list(grouped)
        columns = {
            "image": paths,
            "captions": tf.ragged.constant([grouped[p] for p in paths]),
            "image_id": np.arange(len(paths), dtype="int64"),
            "line": np.asarray([first_line[p] for p in paths], "int64"),
        }

    def read(row):
        # The line is kept as a number and spelled out per example, so the
        # source column costs 8 bytes a row however long the paths are.
        example = {key: value for key, value in row.items() if key != "line"}
        example["image"] = tf.io.read_file(row["image"])
        example["source"] = tf.strings.join(
            [path, ", line ", tf.strings.as_string(row["line"]), ": ", row["image"]]
        )
        return example

    return tf.data.Dataset.from_tensor_slices(columns).map(
        read, num_parallel_calls=tf.data.AUTOTUNE
    )
