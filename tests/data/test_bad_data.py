"""keras_3t.data.bad_data: bad examples are skipped and counted, or stop the
pipeline naming the file, the line and the image.

The pipeline is tf.data whatever the backend: the tests that only read it,
and the recipe's message, run under one backend (`one_backend`); `fit`
stopping on a bad image runs on every backend."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_3t import data
from keras_3t.data.bad_data import bad_example_error_message
from tests.data.caption_files import caption_rows
from tests.data.caption_files import write_csv
from tests.data.caption_files import write_jsonl
from tests.helpers import IMAGE_SIZE
from tests.helpers import tiny_model
from tests.helpers import toy_preprocessor
from tests.helpers import train_recipe_briefly


def _bad_examples(folder, names):
    with open(os.path.join(folder, "broken.png"), "wb") as file:
        file.write(b"these bytes are not an image")
    return caption_rows(names) + [("broken.png", "a red circle"), (names[1], "   ")]


@pytest.mark.one_backend
def test_bad_data_is_skipped_and_counted(image_folder, tmp_path):
    folder, names, _ = image_folder
    rows = _bad_examples(folder, names) + [("missing.png", "a blue square")]
    counter = data.BadDataCounter()
    path = os.path.join(folder, "captions.csv")
    write_csv(path, rows)
    source = data.from_caption_file(path, folder, on_bad_data="skip", bad_data=counter)
    assert counter.counts()["missing_file"] == 1
    dataset = data.make_dataset(
        source,
        toy_preprocessor(),
        IMAGE_SIZE,
        batch_size=4,
        training=False,
        on_bad_data="skip",
        bad_data=counter,
    )
    kept = sum(len(b["images"]) for b in dataset.as_numpy_iterator())
    assert kept == len(caption_rows(names))
    assert counter.counts() == {
        "missing_file": 1,
        "undecodable_image": 1,
        "empty_caption": 1,
        "unreadable_shard": 0,
    }

    # TFRecords: the writer leaves bad examples out and says so in the manifest.
    records = str(tmp_path / "records")
    rows = _bad_examples(folder, names)
    encoded = tf.data.Dataset.from_tensor_slices(
        {
            "image": [open(os.path.join(folder, image), "rb").read() for image, _ in rows],
            "caption": [c for _, c in rows],
            "image_id": np.arange(len(rows)),
        }
    )
    manifest = data.write_tfrecords(encoded, records, num_shards=2, on_bad_data="skip")
    assert manifest["skipped"] == {"undecodable_image": 1, "empty_caption": 1}
    assert manifest["examples"] == len(caption_rows(names))

    # The callback puts the counts in the epoch logs.
    logs = {}
    data.BadDataReport(counter).on_epoch_end(0, logs)
    assert logs["skipped_undecodable_image"] == 1


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "bad_row, message",
    [
        (("broken.png", "a red circle"), "Undecodable image"),
        (("image_1.png", "   "), "Empty caption"),
    ],
)
def test_bad_data_raises_by_default(image_folder, tmp_path, bad_row, message):
    folder, names, _ = image_folder
    with open(os.path.join(folder, "broken.png"), "wb") as file:
        file.write(b"these bytes are not an image")
    rows = caption_rows(names) + [bad_row]
    path = os.path.join(folder, "captions.csv")
    write_csv(path, rows)
    dataset = data.make_dataset(
        data.from_caption_file(path, folder),
        toy_preprocessor(),
        IMAGE_SIZE,
        batch_size=4,
        training=False,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        list(dataset.as_numpy_iterator())
    with pytest.raises(
        ValueError, match=message.split()[0].lower() if "Empty" in message else "undecodable"
    ):
        data.write_tfrecords(data.from_caption_file(path, folder), str(tmp_path / "records"))
    assert not os.path.exists(tmp_path / "records") or not os.listdir(tmp_path / "records")
    rows.append(("missing.png", "a red square"))
    write_csv(path, rows)
    with pytest.raises(FileNotFoundError, match="line 10.*missing.png"):
        data.from_caption_file(path, folder)


def _encoded(encode):
    pixels = np.random.default_rng(1).integers(0, 256, size=(12, 14, 3), dtype=np.uint8)
    return encode(pixels).numpy()


def _truncated(encode):
    """A real image encoded by `encode`, cut in half (its header intact)."""
    encoded = _encoded(encode)
    return encoded[: len(encoded) // 2]


def _corrupt_in_the_middle(encode):
    """A real image with ten bytes in its middle zeroed (its header and end intact)."""
    encoded = _encoded(encode)
    middle = len(encoded) // 2
    return encoded[:middle] + bytes(10) + encoded[middle + 10 :]


# Images whose header looks right but which do not decode.
BROKEN = {
    "truncated jpeg": ("cut.jpg", lambda: _truncated(tf.io.encode_jpeg)),
    "truncated png": ("cut.png", lambda: _truncated(tf.io.encode_png)),
    "corrupt png": ("corrupt.png", lambda: _corrupt_in_the_middle(tf.io.encode_png)),
}


def _with_a_broken_image(folder, names, kind):
    name, make = BROKEN[kind]
    with open(os.path.join(folder, name), "wb") as file:
        file.write(make())
    path = os.path.join(folder, "captions.csv")
    # Lines 2-8 are good rows (image_ids 0-5); line 9 names the bad image, image_id 6.
    write_csv(path, caption_rows(names) + [(name, "a red circle")])
    return path, os.path.join(folder, name)


@pytest.mark.one_backend
@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_image_stops_the_pipeline_naming_file_line_and_image_id(image_folder, kind):
    folder, names, _ = image_folder
    path, image = _with_a_broken_image(folder, names, kind)
    # The first training batch holds all eight rows (shuffled); evaluation reads them in order.
    training = data.make_dataset(
        data.from_caption_file(path, folder), toy_preprocessor(), IMAGE_SIZE, batch_size=8, seed=0
    )
    evaluation = data.make_dataset(
        data.from_caption_file(path, folder),
        toy_preprocessor(),
        IMAGE_SIZE,
        batch_size=4,
        training=False,
    )
    for read in (lambda: next(iter(training)), lambda: list(evaluation)):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            read()
        # The message alone, unescaped, as recipes/train.py prints it.
        assert bad_example_error_message(error.value) == (
            f"Undecodable image (truncated or corrupt) for image_id 6 in {path}, line 9: {image}"
            " - pass on_bad_data='skip' to drop and count such examples."
        )

    # write_tfrecords refuses it too, naming the row.
    with pytest.raises(ValueError, match=re.escape(f"image_id 6, {path}, line 9: {image})")):
        data.write_tfrecords(data.from_caption_file(path, folder), os.path.join(folder, "records"))


def test_fit_stops_on_a_truncated_image_naming_it(image_folder):
    folder, names, _ = image_folder
    path, image = _with_a_broken_image(folder, names, "truncated jpeg")
    dataset = data.make_dataset(
        data.from_caption_file(path, folder), toy_preprocessor(), IMAGE_SIZE, batch_size=8, seed=0
    )
    model = tiny_model("3t")
    model.compile()
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    text = bad_example_error_message(error.value)
    assert f"image_id 6 in {path}, line 9: {image}" in text and "on_bad_data='skip'" in text


# The recipe's message: fit stopping on a bad image, whatever the backend,
# is test_fit_stops_on_a_truncated_image_naming_it.
@pytest.mark.one_backend
def test_the_train_recipe_ends_on_bad_data_with_one_line(image_folder, tmp_path):
    # A bad image met while training, and a missing file met while reading
    # the captions: the message alone (exit code 1), with the recipe's flag.
    folder, names, _ = image_folder
    path, image = _with_a_broken_image(folder, names, "truncated jpeg")
    with pytest.raises(SystemExit) as exit:
        train_recipe_briefly(path, tmp_path / "broken", "--image-root", folder)
    assert exit.value.code == (
        f"Undecodable image (truncated or corrupt) for image_id 6 in {path}, line 9: {image}"
        " - pass --on-bad-data skip to drop and count such examples."
    )
    write_csv(path, caption_rows(names) + [("missing.png", "a red square")])
    with pytest.raises(SystemExit) as exit:
        train_recipe_briefly(path, tmp_path / "missing", "--image-root", folder)
    assert exit.value.code.startswith(f"{path}, line 9: image file ")
    assert exit.value.code.endswith("pass --on-bad-data skip to drop and count them.")


@pytest.mark.one_backend
def test_each_bad_file_and_row_is_counted_once_however_often_it_is_read(image_folder):
    # Training repeats the data: 5 passes over a file where a broken image is
    # named by two rows, one caption is empty and a missing file is named twice.
    folder, names, _ = image_folder
    rows = _bad_examples(folder, names) + [("broken.png", "a blue circle")]
    rows += [("missing.png", "a blue square"), ("missing.png", "a red square")]
    path = os.path.join(folder, "captions.csv")
    write_csv(path, rows)
    counter = data.BadDataCounter()
    examples = data.from_caption_file(path, folder, on_bad_data="skip", bad_data=counter)
    dataset = data.make_dataset(
        examples, toy_preprocessor(), IMAGE_SIZE, 4, seed=0, on_bad_data="skip", bad_data=counter
    )
    for _ in dataset.take(5 * len(rows) // 4):
        pass
    assert counter.counts() == {
        "missing_file": 1,
        "undecodable_image": 1,
        "empty_caption": 1,
        "unreadable_shard": 0,
    }


@pytest.mark.one_backend
def test_broken_images_are_skipped_and_counted(image_folder):
    folder, names, _ = image_folder
    rows = caption_rows(names)
    for kind, (name, make) in BROKEN.items():
        with open(os.path.join(folder, name), "wb") as file:
            file.write(make())
        rows.append((name, f"a {kind}"))
    path = os.path.join(folder, "captions.csv")
    write_csv(path, rows)
    counter = data.BadDataCounter()
    dataset = data.make_dataset(
        data.from_caption_file(path, folder),
        toy_preprocessor(),
        IMAGE_SIZE,
        batch_size=4,
        training=False,
        on_bad_data="skip",
        bad_data=counter,
    )
    batches = list(dataset.as_numpy_iterator())
    assert sum(len(b["images"]) for b in batches) == len(caption_rows(names))
    assert counter.counts() == {
        "missing_file": 0,
        "undecodable_image": len(BROKEN),
        "empty_caption": 0,
        "unreadable_shard": 0,
    }
    assert sorted(batches[0]) == ["images", "padding_mask", "token_ids"]


@pytest.mark.one_backend
def test_other_sources_name_what_they_know_of_a_bad_example(image_folder):
    folder, names, _ = image_folder
    name, make = BROKEN["truncated jpeg"]
    with open(os.path.join(folder, name), "wb") as file:
        file.write(make())
    # A per-image caption file (retrieval): the first line naming the image.
    path = os.path.join(folder, "captions.jsonl")
    write_jsonl(path, [(name, "a red circle")] + caption_rows(names) + [(name, "a blue circle")])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        data.retrieval_task(
            data.from_caption_file(path, folder, per_caption=False), toy_preprocessor(), IMAGE_SIZE
        )
    assert (
        f"image_id 0 in {path}, line 1: {os.path.join(folder, name)}"
        in bad_example_error_message(error.value)
    )

    # TFRecords: the record file and the record's index in it.
    records = os.path.join(folder, "foreign.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for index, image in enumerate([names[0], name, names[1]]):
            with open(os.path.join(folder, image), "rb") as file:
                encoded = file.read()
            feature = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "caption": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a red square"])),
                "image_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[10 + index])),
            }
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(
            data.make_dataset(
                data.from_tfrecords(records), toy_preprocessor(), IMAGE_SIZE, 2, training=False
            )
        )
    assert (
        f"image_id 11 in {records}, record index 1 - pass on_bad_data='skip'"
        in bad_example_error_message(error.value)
    )

    # Decoded images with no file (TFDS): the image_id; an empty caption is named the same way.
    examples = tf.data.Dataset.from_tensor_slices(
        {
            "image": np.zeros((3, 8, 8, 3), "uint8"),
            "caption": ["a", " ", "b"],
            "image_id": [4, 5, 6],
        }
    )
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(data.make_dataset(examples, toy_preprocessor(), IMAGE_SIZE, 2, training=False))
    assert "Empty caption for image_id 5 - pass on_bad_data='skip'" in bad_example_error_message(
        error.value
    )


@pytest.mark.one_backend
def test_skip_mode_needs_a_counter():
    examples = tf.data.Dataset.from_tensor_slices(
        {"image": ["x"], "caption": ["a"], "image_id": [0]}
    )
    with pytest.raises(ValueError, match="BadDataCounter"):
        data.make_dataset(examples, toy_preprocessor(), IMAGE_SIZE, 2, on_bad_data="skip")


def _records_with_bad_examples(folder, names):
    """TFRecords written by hand (not by write_tfrecords), holding bad examples."""
    path = os.path.join(folder, "foreign.tfrecord")
    rows = _bad_examples(folder, names)
    with tf.io.TFRecordWriter(path) as writer:
        for index, (image, caption) in enumerate(rows):
            feature = {
                "image": tf.train.Feature(
                    bytes_list=tf.train.BytesList(
                        value=[open(os.path.join(folder, image), "rb").read()]
                    )
                ),
                "caption": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[caption.encode()])
                ),
                "image_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
            }
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )
    return data.from_tfrecords(path), {"undecodable_image": 1, "empty_caption": 1}


def _decoded_with_an_empty_caption(folder, names):
    """Decoded uint8 images, as TFDS sources give them, and one empty caption."""
    images = np.zeros((5, 20, 20, 3), "uint8")
    captions = ["a red square", "", "a blue circle", "green", "a red circle"]
    examples = tf.data.Dataset.from_tensor_slices(
        {"image": images, "caption": captions, "image_id": np.arange(5)}
    )
    return examples, {"empty_caption": 1}


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "make",
    [_records_with_bad_examples, _decoded_with_an_empty_caption],
    ids=["tfrecords", "decoded (tfds)"],
)
def test_every_source_kind_skips_and_counts_or_raises(image_folder, make):
    folder, names, _ = image_folder
    examples, expected = make(folder, names)
    total = len(list(examples))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Undecodable|Empty caption"):
        list(
            data.make_dataset(
                examples, toy_preprocessor(), IMAGE_SIZE, 2, training=False
            ).as_numpy_iterator()
        )
    counter = data.BadDataCounter()
    kept = sum(
        len(b["images"])
        for b in data.make_dataset(
            examples,
            toy_preprocessor(),
            IMAGE_SIZE,
            2,
            training=False,
            on_bad_data="skip",
            bad_data=counter,
        ).as_numpy_iterator()
    )
    counts = {kind: count for kind, count in counter.counts().items() if count}
    assert counts == expected and kept == total - sum(expected.values())
