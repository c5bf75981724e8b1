"""keras_3t.data.sources: caption files, TFDS and per-image sources."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_3t import data
from tests.data.caption_files import caption_rows
from tests.data.caption_files import write_csv
from tests.data.caption_files import write_jsonl
from tests.helpers import IMAGE_SIZE
from tests.helpers import SEQUENCE_LENGTH
from tests.helpers import tiny_model
from tests.helpers import toy_preprocessor


@pytest.mark.parametrize("writer, suffix", [(write_csv, "csv"), (write_jsonl, "jsonl")])
def test_caption_files_yield_every_row_with_shared_image_ids(image_folder, writer, suffix):
    folder, names, pixels = image_folder
    path = os.path.join(folder, f"captions.{suffix}")
    writer(path, caption_rows(names))
    examples = list(data.from_caption_file(path, folder).as_numpy_iterator())
    assert [e["caption"].decode() for e in examples] == [c for _, c in caption_rows(names)]
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


def test_a_per_image_source_becomes_a_retrieval_task(image_folder):
    from keras_3t.evaluation import evaluate_model

    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    write_csv(path, caption_rows(names))
    per_image = data.from_caption_file(path, folder, per_caption=False)
    task = data.retrieval_task(per_image, toy_preprocessor(), IMAGE_SIZE)
    assert task["images"].shape == (6, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert task["texts"]["token_ids"].shape == (7, SEQUENCE_LENGTH)
    assert task["text_to_image"].tolist() == [0, 0, 1, 2, 3, 4, 5]
    metrics = evaluate_model(tiny_model("3t"), retrieval=task)
    assert 0.0 <= metrics["image_to_text_r1"] <= 1.0
    with pytest.raises(ValueError, match="per_caption=False"):
        data.retrieval_task(data.from_caption_file(path, folder), toy_preprocessor(), IMAGE_SIZE)
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        coco = data.retrieval_task(
            data.from_tfds("coco_captions", "val", per_caption=False),
            toy_preprocessor(),
            IMAGE_SIZE,
        )
    assert len(coco["images"]) == 2 and len(coco["text_to_image"]) >= 2
