"""keras_3t.data.records: TFRecord shards round-trip the examples."""

import os

import pytest

from keras_3t import data
from tests.data.caption_files import caption_rows
from tests.data.caption_files import write_csv


def test_tfrecords_round_trip_identical_examples(image_folder, tmp_path):
    folder, names, _ = image_folder
    path = os.path.join(folder, "captions.csv")
    write_csv(path, caption_rows(names))
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
