"""keras_3t.data: sources, TFRecords, the tf.data pipeline and bad data."""

import csv
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_3t import data
from keras_3t.preprocessing import RESERVED_TOKENS
from keras_3t.preprocessing import ThreeTowerPreprocessor
from keras_3t.preprocessing import caption_tokenizer
from tests.conftest import IMAGE_SIZE
from tests.conftest import SEQUENCE_LENGTH
from tests.conftest import load_script
from tests.conftest import tiny_model
from tests.conftest import write_digit_scene_captions

WORDS = ["a", "red", "blue", "green", "square", "circle"]


def _preprocessor():
    return ThreeTowerPreprocessor(caption_tokenizer([*RESERVED_TOKENS, *WORDS]), SEQUENCE_LENGTH)


def _write_images(folder, count, seed=0):
    """PNG files of random sizes; returns their names and pixel arrays."""
    rng = np.random.default_rng(seed)
    names, pixels = [], []
    for i in range(count):
        image = rng.integers(0, 256, size=(20 + 3 * i, 24 + 2 * i, 3), dtype=np.uint8)
        name = f"image_{i}.png"
        with open(os.path.join(folder, name), "wb") as file:
            file.write(tf.io.encode_png(image).numpy())
        names.append(name)
        pixels.append(image)
    return names, pixels


def _caption_rows(names):
    # Two captions for the first image: rows naming one image share its id.
    rows = [(name, f"a {WORDS[1 + i % 5]} square") for i, name in enumerate(names)]
    return rows + [(names[0], "a green circle")]


def _write_csv(path, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)


def _write_jsonl(path, rows):
    with open(path, "w") as file:
        for image, caption in rows:
            file.write(json.dumps({"image": image, "caption": caption}) + "\n")


@pytest.fixture
def image_folder(tmp_path):
    names, pixels = _write_images(str(tmp_path), 6)
    return str(tmp_path), names, pixels


@pytest.mark.parametrize("writer, suffix", [(_write_csv, "csv"), (_write_jsonl, "jsonl")])
def test_caption_files_yield_every_row_with_shared_image_ids(image_folder, writer, suffix):
    folder, names, pixels = image_folder
    path = os.path.join(folder, f"captions.{suffix}")
    writer(path, _caption_rows(names))
    examples = list(data.from_caption_file(path, folder).as_numpy_iterator())
    assert [e["caption"].decode() for e in examples] == [c for _, c in _caption_rows(names)]
    ids = [int(e["image_id"]) for e in examples]
    assert ids == [0, 1, 2, 3, 4, 5, 0]
    # Where each example was read, for errors about it: CSV rows start on line 2, after the header.
    first_line = 2 if suffix == "csv" else 1
    assert (
        examples[6]["source"].decode()
        == f"{path}, line {first_line + 6}: {os.path.join(folder, names[0])}"
    )
    decoded = tf.io.decode_png(examples[2]["image"]).numpy()
    np.testing.assert_array_equal(decoded, pixels[2])

    per_image = list(data.from_caption_file(path, folder, per_caption=False).as_numpy_iterator())
    assert len(per_image) == 6
    assert [c.decode() for c in per_image[0]["captions"]] == ["a red square", "a green circle"]


def test_a_caption_file_without_the_columns_names_the_line(tmp_path):
    path = str(tmp_path / "captions.csv")
    with open(path, "w") as file:
        file.write("path,text\nx.png,a red square\n")
    with pytest.raises(ValueError, match="line 2.*'image'"):
        data.from_caption_file(path, str(tmp_path))


def test_tfrecords_round_trip_identical_examples(image_folder, tmp_path):
    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, _caption_rows(names))
    source = data.from_caption_file(path, folder)
    records = str(tmp_path / "records")
    manifest = data.write_tfrecords(source, records, num_shards=3)
    assert manifest["examples"] == 7 and len(manifest["shards"]) == 3

    def key(example):
        return (int(example["image_id"]), example["caption"])

    original = sorted(source.as_numpy_iterator(), key=key)
    restored = sorted(data.from_tfrecords(records).as_numpy_iterator(), key=key)
    assert len(restored) == len(original)
    for a, b in zip(original, restored):
        assert a["image"] == b["image"] and a["caption"] == b["caption"]
        assert a["image_id"] == b["image_id"]
    # Sharding by file across two workers splits the examples exactly.
    halves = [list(data.from_tfrecords(records, 2, i).as_numpy_iterator()) for i in range(2)]
    assert sorted(map(key, halves[0] + halves[1])) == sorted(map(key, original))
    with pytest.raises(FileExistsError):
        data.write_tfrecords(source, records)
    with pytest.raises(ValueError, match="workers"):
        data.from_tfrecords(records, num_shards=4)


def test_tfds_source_on_mocked_coco_captions():
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        per_image = list(
            data.from_tfds("coco_captions", "train", per_caption=False).as_numpy_iterator()
        )
        per_caption = list(data.from_tfds("coco_captions", "train").as_numpy_iterator())
    assert len(per_image) == 3
    assert len(per_caption) == sum(len(e["captions"]) for e in per_image)
    first = per_image[0]
    mine = [e for e in per_caption if e["image_id"] == first["image_id"]]
    assert [e["caption"] for e in mine] == list(first["captions"])
    np.testing.assert_array_equal(mine[0]["image"], first["image"])


def test_tfds_without_prepared_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared.*tfds build"):
        data.from_tfds("mnist", "train", data_dir=str(tmp_path))


# --- The pipeline ----------------------------------------------------------------


def test_pipeline_batches_are_model_ready_and_deterministic_with_a_seed(image_folder):
    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, _caption_rows(names))

    def first_batches(seed):
        dataset = data.make_dataset(
            data.from_caption_file(path, folder),
            _preprocessor(),
            IMAGE_SIZE,
            batch_size=4,
            seed=seed,
            flip=True,
        )
        return [batch for batch in dataset.take(3).as_numpy_iterator()]

    one, two, other = first_batches(1), first_batches(1), first_batches(2)
    for a, b in zip(one, two):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a["images"], c["images"]) for a, c in zip(one, other))
    batch = one[0]
    assert batch["images"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert (
        batch["images"].dtype == np.float32
        and 0.0 <= batch["images"].min() <= batch["images"].max() <= 1.0
    )
    assert (
        batch["token_ids"].shape == (4, SEQUENCE_LENGTH) and batch["padding_mask"].any(axis=1).all()
    )


def test_evaluation_pipeline_keeps_every_example_in_order(image_folder):
    folder, names, pixels = image_folder
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, _caption_rows(names))
    batches = list(
        data.make_dataset(
            data.from_caption_file(path, folder),
            _preprocessor(),
            IMAGE_SIZE,
            batch_size=4,
            training=False,
        ).as_numpy_iterator()
    )
    assert [len(b["images"]) for b in batches] == [4, 3]
    # Each image is its file's, resized (shorter side) and centrally cropped.
    for index in range(6):
        image = pixels[index] / 255.0
        height, width = image.shape[:2]
        scaled = tf.image.resize(
            image,
            (
                int(np.ceil(height * IMAGE_SIZE / min(height, width))),
                int(np.ceil(width * IMAGE_SIZE / min(height, width))),
            ),
            antialias=True,
        )
        expected = tf.image.resize_with_crop_or_pad(scaled, IMAGE_SIZE, IMAGE_SIZE).numpy()
        got = batches[index // 4]["images"][index % 4]
        np.testing.assert_allclose(got, expected, atol=1e-5)


def _bad_examples(folder, names):
    with open(os.path.join(folder, "broken.png"), "wb") as file:
        file.write(b"these bytes are not an image")
    return _caption_rows(names) + [("broken.png", "a red circle"), (names[1], "   ")]


def test_bad_data_is_skipped_and_counted(image_folder, tmp_path):
    folder, names, _ = image_folder
    rows = _bad_examples(folder, names) + [("missing.png", "a blue square")]
    counter = data.BadDataCounter()
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, rows)
    source = data.from_caption_file(path, folder, on_bad_data="skip", bad_data=counter)
    assert counter.counts()["missing_file"] == 1
    dataset = data.make_dataset(
        source,
        _preprocessor(),
        IMAGE_SIZE,
        batch_size=4,
        training=False,
        on_bad_data="skip",
        bad_data=counter,
    )
    kept = sum(len(b["images"]) for b in dataset.as_numpy_iterator())
    assert kept == len(_caption_rows(names))
    assert counter.counts() == {"missing_file": 1, "undecodable_image": 1, "empty_caption": 1}

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
    assert manifest["examples"] == len(_caption_rows(names))

    # The callback puts the counts in the epoch logs.
    logs = {}
    data.BadDataReport(counter).on_epoch_end(0, logs)
    assert logs["skipped_undecodable_image"] == 1


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
    rows = _caption_rows(names) + [bad_row]
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, rows)
    dataset = data.make_dataset(
        data.from_caption_file(path, folder),
        _preprocessor(),
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
    _write_csv(path, rows)
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


def _error_text(error):
    # tf.debugging.Assert prints its message C-escaped: ' comes as \'.
    return str(error).replace("\\'", "'")


def _with_a_broken_image(folder, names, kind):
    name, make = BROKEN[kind]
    with open(os.path.join(folder, name), "wb") as file:
        file.write(make())
    path = os.path.join(folder, "captions.csv")
    # Lines 2-8 are good rows (image_ids 0-5); line 9 names the bad image, image_id 6.
    _write_csv(path, _caption_rows(names) + [(name, "a red circle")])
    return path, os.path.join(folder, name)


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_image_stops_the_pipeline_naming_file_line_and_image_id(image_folder, kind):
    folder, names, _ = image_folder
    path, image = _with_a_broken_image(folder, names, kind)
    # The first training batch holds all eight rows (shuffled); evaluation reads them in order.
    training = data.make_dataset(
        data.from_caption_file(path, folder), _preprocessor(), IMAGE_SIZE, batch_size=8, seed=0
    )
    evaluation = data.make_dataset(
        data.from_caption_file(path, folder),
        _preprocessor(),
        IMAGE_SIZE,
        batch_size=4,
        training=False,
    )
    for read in (lambda: next(iter(training)), lambda: list(evaluation)):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            read()
        text = _error_text(error.value)
        assert (
            f"Undecodable image (truncated or corrupt) for image_id 6 in {path}, line 9: {image} "
            in text
        )
        assert "on_bad_data='skip' to drop and count such examples" in text

    # write_tfrecords refuses it too, naming the row.
    with pytest.raises(ValueError, match=re.escape(f"image_id 6, {path}, line 9: {image})")):
        data.write_tfrecords(data.from_caption_file(path, folder), os.path.join(folder, "records"))


def test_fit_stops_on_a_truncated_image_naming_it(image_folder):
    folder, names, _ = image_folder
    path, image = _with_a_broken_image(folder, names, "truncated jpeg")
    dataset = data.make_dataset(
        data.from_caption_file(path, folder), _preprocessor(), IMAGE_SIZE, batch_size=8, seed=0
    )
    model = tiny_model("3t")
    model.compile()
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    text = _error_text(error.value)
    assert f"image_id 6 in {path}, line 9: {image}" in text and "on_bad_data='skip'" in text


def test_broken_images_are_skipped_and_counted(image_folder):
    folder, names, _ = image_folder
    rows = _caption_rows(names)
    for kind, (name, make) in BROKEN.items():
        with open(os.path.join(folder, name), "wb") as file:
            file.write(make())
        rows.append((name, f"a {kind}"))
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, rows)
    counter = data.BadDataCounter()
    dataset = data.make_dataset(
        data.from_caption_file(path, folder),
        _preprocessor(),
        IMAGE_SIZE,
        batch_size=4,
        training=False,
        on_bad_data="skip",
        bad_data=counter,
    )
    batches = list(dataset.as_numpy_iterator())
    assert sum(len(b["images"]) for b in batches) == len(_caption_rows(names))
    assert counter.counts() == {
        "missing_file": 0,
        "undecodable_image": len(BROKEN),
        "empty_caption": 0,
    }
    assert sorted(batches[0]) == ["images", "padding_mask", "token_ids"]


def test_other_sources_name_what_they_know_of_a_bad_example(image_folder):
    folder, names, _ = image_folder
    name, make = BROKEN["truncated jpeg"]
    with open(os.path.join(folder, name), "wb") as file:
        file.write(make())
    # A per-image caption file (retrieval): the first line naming the image.
    path = os.path.join(folder, "captions.jsonl")
    _write_jsonl(path, [(name, "a red circle")] + _caption_rows(names) + [(name, "a blue circle")])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        data.retrieval_task(
            data.from_caption_file(path, folder, per_caption=False), _preprocessor(), IMAGE_SIZE
        )
    assert f"image_id 0 in {path}, line 1: {os.path.join(folder, name)}" in _error_text(error.value)

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
                data.from_tfrecords(records), _preprocessor(), IMAGE_SIZE, 2, training=False
            )
        )
    assert f"image_id 11 in {records}, record index 1 - pass on_bad_data='skip'" in _error_text(
        error.value
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
        list(data.make_dataset(examples, _preprocessor(), IMAGE_SIZE, 2, training=False))
    assert "Empty caption for image_id 5 - pass on_bad_data='skip'" in _error_text(error.value)


def test_skip_mode_needs_a_counter():
    examples = tf.data.Dataset.from_tensor_slices(
        {"image": ["x"], "caption": ["a"], "image_id": [0]}
    )
    with pytest.raises(ValueError, match="BadDataCounter"):
        data.make_dataset(examples, _preprocessor(), IMAGE_SIZE, 2, on_bad_data="skip")


def test_the_pipeline_feeds_fit(image_folder, tmp_path):
    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, _caption_rows(names))
    records = str(tmp_path / "records")
    data.write_tfrecords(data.from_caption_file(path, folder), records, num_shards=2)
    dataset = data.make_dataset(
        data.from_tfrecords(records), _preprocessor(), IMAGE_SIZE, batch_size=4, seed=0
    )
    model = tiny_model("3t")
    model.compile()
    history = model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_train_recipe_trains_a_preset_on_a_caption_file_and_saves_it(tmp_path):
    import keras

    from keras_3t import presets

    # Real digit scenes written as PNG files with their captions.
    write_digit_scene_captions(str(tmp_path), 24)

    recipe = load_script("recipes/train.py")
    output = str(tmp_path / "run")
    records = str(tmp_path / "records")
    history = recipe.main(
        [
            "--preset",
            "3t_tiny",
            "--data",
            str(tmp_path / "captions.csv"),
            "--image-root",
            str(tmp_path),
            "--write-tfrecords",
            records,
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "2",
            "--output",
            output,
        ]
    )
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert sorted(os.listdir(os.path.join(output, "checkpoints"))) == [
        "step-000000002",
        "step-000000004",
    ]
    model = presets.load(os.path.join(output, "preset"))
    assert tuple(keras.ops.shape(model.encode_text(["a 3"]))) == (1, 64)
    with pytest.raises(SystemExit, match="not empty"):
        recipe.main(["--data", str(tmp_path / "captions.csv"), "--output", output])


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
                examples, _preprocessor(), IMAGE_SIZE, 2, training=False
            ).as_numpy_iterator()
        )
    counter = data.BadDataCounter()
    kept = sum(
        len(b["images"])
        for b in data.make_dataset(
            examples,
            _preprocessor(),
            IMAGE_SIZE,
            2,
            training=False,
            on_bad_data="skip",
            bad_data=counter,
        ).as_numpy_iterator()
    )
    counts = {kind: count for kind, count in counter.counts().items() if count}
    assert counts == expected and kept == total - sum(expected.values())


def test_an_input_context_shards_and_splits_the_global_batch(image_folder):
    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, _caption_rows(names))
    examples = data.from_caption_file(path, folder)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        batches = list(
            data.make_dataset(
                examples,
                _preprocessor(),
                IMAGE_SIZE,
                batch_size=4,
                training=False,
                input_context=context,
            ).as_numpy_iterator()
        )
        assert max(len(b["images"]) for b in batches) == 2  # the per-replica share of 4
        seen += [row for b in batches for row in b["token_ids"].tolist()]
    everything = list(
        data.make_dataset(
            examples, _preprocessor(), IMAGE_SIZE, 7, training=False
        ).as_numpy_iterator()
    )[0]["token_ids"].tolist()
    assert sorted(seen) == sorted(everything)


def test_a_per_image_source_becomes_a_retrieval_task(image_folder):
    from keras_3t.evaluation import evaluate_model

    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    _write_csv(path, _caption_rows(names))
    per_image = data.from_caption_file(path, folder, per_caption=False)
    task = data.retrieval_task(per_image, _preprocessor(), IMAGE_SIZE)
    assert task["images"].shape == (6, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert task["texts"]["token_ids"].shape == (7, SEQUENCE_LENGTH)
    assert task["text_to_image"].tolist() == [0, 0, 1, 2, 3, 4, 5]
    metrics = evaluate_model(tiny_model("3t"), retrieval=task)
    assert 0.0 <= metrics["image_to_text_r1"] <= 1.0
    with pytest.raises(ValueError, match="per_caption=False"):
        data.retrieval_task(data.from_caption_file(path, folder), _preprocessor(), IMAGE_SIZE)
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        coco = data.retrieval_task(
            data.from_tfds("coco_captions", "val", per_caption=False), _preprocessor(), IMAGE_SIZE
        )
    assert len(coco["images"]) == 2 and len(coco["text_to_image"]) >= 2
