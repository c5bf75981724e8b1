"""keras_3t.data.from_img2dataset on what img2dataset itself wrote.

img2dataset (from PyPI, in a venv of its own: `img2dataset_run`) downloads
a URL list served on 127.0.0.1 into webdataset, parquet and TFRecord shards.

The shards are read by tf.data whatever the backend: the tests that only
read them run under one backend (`one_backend`); the train recipe's `fit`
on them runs on every backend.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_3t
from keras_3t import data
from keras_3t.collection.items import image_collection
from keras_3t.data import shards
from keras_3t.data.shards import expand_shards
from tests.data import img2dataset_run
from tests.helpers import png
from tests.helpers import snapshot
from tests.helpers import train_recipe_briefly
from tests.helpers import whole_and_truncated_tars
from tests.helpers import write_tar

FORMATS = ("webdataset", "parquet", "tfrecord")


@pytest.fixture
def outputs(img2dataset_outputs):
    return img2dataset_outputs


def by_key(examples):
    return {e["key"].decode(): e for e in examples.as_numpy_iterator()}


@pytest.mark.one_backend
@pytest.mark.parametrize("output_format", FORMATS)
def test_every_downloaded_example_is_read_with_its_caption_and_key(outputs, output_format):
    examples = by_key(data.from_img2dataset(outputs[output_format]))
    # The broken URLs are img2dataset's failures, in its stats, not examples.
    assert img2dataset_run.successes(outputs["webdataset"]) == img2dataset_run.IMAGES
    assert len(examples) == img2dataset_run.IMAGES
    captions = sorted(e["caption"].decode() for e in examples.values())
    assert captions == sorted(map(img2dataset_run.caption_of, range(img2dataset_run.IMAGES)))
    for key, example in examples.items():
        assert example["image_id"] == int(key)
        assert example["source"].decode().endswith(f"key {key}")
        assert os.path.dirname(example["source"].decode()) == outputs[output_format]
        # img2dataset resized every image to 32 × 32 (its default border mode).
        assert tf.io.decode_image(example["image"]).shape == (32, 32, 3)


@pytest.mark.one_backend
def test_the_three_formats_hold_the_same_examples(outputs):
    reads = {f: by_key(data.from_img2dataset(outputs[f])) for f in FORMATS}
    for output_format in ("parquet", "tfrecord"):
        assert reads[output_format].keys() == reads["webdataset"].keys()
        for key, example in reads[output_format].items():
            assert example["caption"] == reads["webdataset"][key]["caption"]
            assert example["image"] == reads["webdataset"][key]["image"]


@pytest.mark.parametrize("output_format", FORMATS)
@pytest.mark.one_backend
def test_embed_collection_reads_each_format_one_stream_per_shard(outputs, output_format):
    """keras_3t.collection.items on img2dataset's own shards (`keras-3t embed --images`)."""
    folder = outputs[output_format]
    collection = image_collection(folder)
    shard_names = [name for name, _ in collection.streams]
    assert shard_names == sorted(shard_names) and len(shard_names) > 1
    assert collection.total is None
    items = [item for _, read in collection.streams for item in read()]
    assert sorted(item.caption for item in items) == sorted(
        map(img2dataset_run.caption_of, range(img2dataset_run.IMAGES))
    )
    assert len({item.id for item in items}) == img2dataset_run.IMAGES
    for item in items:
        assert item.id.isdigit() and item.image and item.where.endswith(f", key {item.id}")


@pytest.mark.one_backend
def test_shard_patterns_and_each_workers_own_shards(outputs):
    folder = outputs["webdataset"]
    tars = expand_shards(folder)
    # 16 URLs, 4 per shard: four shards, each with a parquet of statuses beside it.
    assert [os.path.basename(f) for f in tars] == [f"{i:05d}.tar" for i in range(4)]
    assert expand_shards(os.path.join(folder, "{00000..00003}.tar")) == tars
    assert expand_shards(os.path.join(folder, "*.tar")) == tars
    assert expand_shards([tars[2], os.path.join(folder, "{00000,00001}.tar")]) == [
        tars[2],
        tars[0],
        tars[1],
    ]
    everything = sorted(by_key(data.from_img2dataset(folder)))
    shares = [sorted(by_key(data.from_img2dataset(folder, 3, i))) for i in range(3)]
    assert sorted(sum(shares, [])) == everything
    assert not set(shares[0]) & set(shares[1])
    with pytest.raises(ValueError, match="4 shard file.*5 workers"):
        data.from_img2dataset(folder, num_shards=5)
    with pytest.raises(FileNotFoundError, match="00004.tar"):
        data.from_img2dataset(os.path.join(folder, "{00000..00004}.tar"))
    with pytest.raises(ValueError, match=".tar.*.parquet"):
        data.from_img2dataset([tars[0], os.path.join(folder, "00000.parquet")])


# fit on these shards' batches runs on every backend in the recipe test below
# (parquet), and what a step moves in tests/model/test_three_tower_model.py.
@pytest.mark.one_backend
def test_a_preset_trains_on_img2dataset_shards(outputs):
    keras.utils.set_random_seed(0)
    model = keras_3t.presets.load("3t_tiny")
    model.compile(learning_rate=1e-3)
    before = snapshot(model.image_tower.trainable_weights)
    batches = data.make_dataset(
        data.from_img2dataset(outputs["webdataset"]), model.preprocessor, 56, 4, seed=0
    )
    history = model.fit(batches, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    after = snapshot(model.image_tower.trainable_weights)
    assert all(not np.array_equal(before[path], after[path]) for path in before)


# Training is the backend's: on parquet shards on every backend. Telling
# img2dataset's TFRecord shards from the recipe's own is the recipe's file
# handling: under one backend.
@pytest.mark.parametrize(
    "output_format", ["parquet", pytest.param("tfrecord", marks=pytest.mark.one_backend)]
)
def test_the_train_recipe_reads_img2dataset_shards(outputs, output_format, tmp_path):
    folder = outputs[output_format]
    extension = "parquet" if output_format == "parquet" else "tfrecord"
    pattern = os.path.join(folder, "{00000..00003}." + extension)
    recipe, history = train_recipe_briefly(pattern, tmp_path / "run")
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"]).all()
    assert recipe.is_img2dataset(folder) and recipe.is_img2dataset(folder + "/*." + extension)


@pytest.mark.one_backend
def test_a_resumed_run_reads_the_batches_the_run_had_not_reached(outputs):
    # Shards are read in a fixed order and the shuffle is seeded, so a run
    # resumed at step k (make_dataset(start_step=k), as recipes/train.py
    # --resume does) continues with the very batches the killed run would
    # have read next, across the epoch boundary (14 examples, batches of 4).
    preprocessor = keras_3t.presets.load("clip_tiny").preprocessor

    def stream(start_step):
        examples = data.from_img2dataset(outputs["webdataset"])
        dataset = data.make_dataset(examples, preprocessor, 56, 4, seed=3, start_step=start_step)
        return [batch["images"] for batch in dataset.take(8 - start_step).as_numpy_iterator()]

    whole = stream(0)
    assert not np.array_equal(whole[0], whole[1])
    for start_step in (2, 5):
        for expected, actual in zip(whole[start_step:], stream(start_step), strict=True):
            np.testing.assert_array_equal(actual, expected)


@pytest.fixture
def bad_shard(tmp_path):
    path = str(tmp_path / "00000.tar")
    write_tar(
        path,
        [
            ("000000001.png", png(10)),
            ("000000001.txt", b"a good one"),
            ("000000002.jpg", b"not an image"),
            ("000000002.txt", b"a broken image"),
            ("000000003.png", png(30)),  # no caption
            ("000000004.txt", b"no image"),
        ],
    )
    return path


def batches_of(source, on_bad_data, counter=None):
    preprocessor = keras_3t.presets.load("clip_tiny").preprocessor
    dataset = data.make_dataset(
        source, preprocessor, 8, 1, training=False, on_bad_data=on_bad_data, bad_data=counter
    )
    return list(dataset.as_numpy_iterator())


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "key, message",
    [
        ("000000002", "Undecodable image (not JPEG, PNG, GIF, BMP or WebP data)"),
        ("000000003", "Empty caption"),
        ("000000004", "Undecodable image (no image data)"),
    ],
)
def test_a_bad_record_is_named_by_its_shard_and_key(bad_shard, key, message):
    source = data.from_img2dataset(bad_shard).filter(lambda e: e["key"] == key)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        batches_of(source, "raise")
    assert f"{message} for image_id {int(key)} in {bad_shard}, key {key}" in str(error.value)


@pytest.mark.one_backend
def test_bad_records_are_skipped_and_counted_once_each(bad_shard):
    counter = data.BadDataCounter()
    batches = batches_of(data.from_img2dataset(bad_shard), "skip", counter)
    assert len(batches) == 1
    assert counter.counts() == {
        "missing_file": 0,
        "undecodable_image": 2,
        "empty_caption": 1,
        "unreadable_shard": 0,
    }


@pytest.mark.one_backend
def test_a_truncated_shard_raises_naming_it_or_keeps_what_it_could_read(tmp_path):
    whole, truncated = whole_and_truncated_tars(str(tmp_path))
    with pytest.raises(Exception, match="00001.tar: unreadable tar shard .*after key"):
        list(data.from_img2dataset(truncated).as_numpy_iterator())
    counter = data.BadDataCounter()
    source = data.from_img2dataset([whole, truncated], on_bad_data="skip", bad_data=counter)
    read = [e["source"].decode() for e in source.as_numpy_iterator()]
    assert sum(r.startswith(whole) for r in read) == 6
    assert 0 < sum(r.startswith(truncated) for r in read) < 6
    assert counter.counts()["unreadable_shard"] == 1


@pytest.mark.one_backend
def test_a_truncated_tfrecord_shard_raises_naming_it(outputs, tmp_path):
    written = os.path.join(outputs["tfrecord"], "00000.tfrecord")
    truncated = str(tmp_path / "00000.tfrecord")
    with open(written, "rb") as file:
        payload = file.read()
    with open(truncated, "wb") as file:
        file.write(payload[: len(payload) * 2 // 3])
    with pytest.raises(
        shards.UnreadableShardError, match="00000.tfrecord: unreadable TFRecord shard .*after key"
    ):
        list(shards.tfrecord_records(truncated))


@pytest.mark.one_backend
def test_a_file_that_is_not_parquet_is_named(tmp_path):
    path = str(tmp_path / "00000.parquet")
    with open(path, "wb") as file:
        file.write(b"not parquet")
    with pytest.raises(Exception, match="00000.parquet: not a readable parquet shard"):
        list(data.from_img2dataset(path).as_numpy_iterator())


@pytest.mark.one_backend
def test_the_image_id_of_a_key_that_is_not_a_number_is_a_stable_hash(tmp_path):
    path = str(tmp_path / "00000.tar")
    write_tar(path, [("photo-a.png", png(1)), ("photo-a.txt", b"a")])
    ids = [int(e["image_id"]) for e in data.from_img2dataset(path).as_numpy_iterator()]
    again = [int(e["image_id"]) for e in data.from_img2dataset(path).as_numpy_iterator()]
    assert ids == again == [int(tf.strings.to_hash_bucket_fast("photo-a", 2**62))]
