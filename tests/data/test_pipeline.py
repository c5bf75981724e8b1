"""keras_3t.data.pipeline: model-ready batches, evaluation order, sharding."""

import os

import numpy as np
import tensorflow as tf

from keras_3t import data
from tests.data.caption_files import caption_rows
from tests.data.caption_files import write_csv
from tests.helpers import IMAGE_SIZE
from tests.helpers import SEQUENCE_LENGTH
from tests.helpers import tiny_model
from tests.helpers import toy_preprocessor


def test_pipeline_batches_are_model_ready_and_deterministic_with_a_seed(image_folder):
    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    write_csv(path, caption_rows(names))

    def first_batches(seed):
        dataset = data.make_dataset(
            data.from_caption_file(path, folder),
            toy_preprocessor(),
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
    write_csv(path, caption_rows(names))
    batches = list(
        data.make_dataset(
            data.from_caption_file(path, folder),
            toy_preprocessor(),
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


def test_the_pipeline_feeds_fit(image_folder, tmp_path):
    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    write_csv(path, caption_rows(names))
    records = str(tmp_path / "records")
    data.write_tfrecords(data.from_caption_file(path, folder), records, num_shards=2)
    dataset = data.make_dataset(
        data.from_tfrecords(records), toy_preprocessor(), IMAGE_SIZE, batch_size=4, seed=0
    )
    model = tiny_model("3t")
    model.compile()
    history = model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_an_input_context_shards_and_splits_the_global_batch(image_folder):
    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    write_csv(path, caption_rows(names))
    examples = data.from_caption_file(path, folder)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        batches = list(
            data.make_dataset(
                examples,
                toy_preprocessor(),
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
            examples, toy_preprocessor(), IMAGE_SIZE, 7, training=False
        ).as_numpy_iterator()
    )[0]["token_ids"].tolist()
    assert sorted(seen) == sorted(everything)
