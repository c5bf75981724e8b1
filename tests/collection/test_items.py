"""keras_3t.collection.items: what embed_collection reads, in a fixed order.

Backend-independent (files and TensorFlow's readers): run under one backend.
"""

import os

import pytest

from keras_3t.collection.items import caption_collection
from keras_3t.collection.items import image_collection
from tests.helpers import whole_and_truncated_tars

pytestmark = pytest.mark.one_backend


def read_all(collection):
    return [item for _, read in collection.streams for item in read()]


def test_an_image_folder_is_its_image_files_sorted_by_path(tmp_path):
    for name in ("b/2.PNG", "a.jpg", "b/1.webp", ".hidden.png", ".cache/x.png", "notes.txt"):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    collection = image_collection(str(tmp_path))
    items = read_all(collection)
    assert [item.id for item in items] == ["a.jpg", "b/1.webp", "b/2.PNG"]
    assert [item.image for item in items] == [b"a.jpg", b"b/1.webp", b"b/2.PNG"]
    assert collection.kind == "images" and collection.total == 3
    assert collection.source == str(tmp_path)
    # The listing's fingerprint follows the files and their sizes.
    fingerprint = collection.fingerprint
    assert image_collection(str(tmp_path)).fingerprint == fingerprint
    (tmp_path / "a.jpg").write_bytes(b"longer than before")
    assert image_collection(str(tmp_path)).fingerprint != fingerprint


def test_a_file_gone_after_the_listing_is_an_item_marked_missing(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"y")
    collection = image_collection(str(tmp_path))
    os.remove(tmp_path / "a.png")
    items = read_all(collection)
    assert [(item.id, item.missing) for item in items] == [("a.png", True), ("b.png", False)]


def test_a_folder_without_images_or_a_missing_path_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no image files"):
        image_collection(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No folder, image shard or shard pattern"):
        image_collection(str(tmp_path / "elsewhere"))


def test_shards_are_one_stream_per_shard_in_order(tmp_path):
    whole, truncated = whole_and_truncated_tars(str(tmp_path))
    collection = image_collection(str(tmp_path))
    assert [name for name, _ in collection.streams] == ["00000.tar", "00001.tar"]
    assert collection.total is None and collection.source == str(tmp_path)
    items = list(collection.streams[0][1]())
    assert [(i.id, i.caption, i.where) for i in items[:2]] == [
        ("000000000", "scene 0", "00000.tar, key 000000000"),
        ("000000001", "scene 1", "00000.tar, key 000000001"),
    ]
    # A pattern names the same shards; what img2dataset itself writes is read
    # in tests/data/test_shards.py.
    pattern = os.path.join(str(tmp_path), "{00000..00001}.tar")
    assert [name for name, _ in image_collection(pattern).streams] == ["00000.tar", "00001.tar"]


def test_caption_files_give_ids_and_captions_in_order(tmp_path):
    text = tmp_path / "captions.txt"
    text.write_text("a 3 above a 7\n\na 1\n")
    items = read_all(caption_collection(str(text)))
    assert [(i.id, i.caption, i.where) for i in items] == [
        ("line 1", "a 3 above a 7", "captions.txt, line 1"),
        ("line 2", "", "captions.txt, line 2"),
        ("line 3", "a 1", "captions.txt, line 3"),
    ]
    table = tmp_path / "captions.csv"
    table.write_text("name,text\nx,a 1\ny,a 2\n")
    items = read_all(caption_collection(str(table), caption_column="text", id_column="name"))
    assert [(i.id, i.caption) for i in items] == [("x", "a 1"), ("y", "a 2")]
    lines = tmp_path / "captions.jsonl"
    lines.write_text('{"caption": "a 1"}\n\n{"caption": "a 2"}\n')
    assert [i.id for i in read_all(caption_collection(str(lines)))] == ["line 1", "line 3"]


def test_bad_caption_files_are_refused_naming_the_line(tmp_path):
    table = tmp_path / "captions.csv"
    table.write_text("name,caption\nx,a 1\nx,a 2\n")
    with pytest.raises(ValueError, match="line 3: the id 'x' is taken by an earlier row"):
        caption_collection(str(table), id_column="name")
    with pytest.raises(ValueError, match=r"line 2: no \['text'\] field"):
        caption_collection(str(table), caption_column="text")
    with pytest.raises(ValueError, match="must be .txt, .csv, .tsv, .jsonl"):
        caption_collection(str(table.rename(tmp_path / "captions.md")))
    with pytest.raises(FileNotFoundError, match="No caption file"):
        caption_collection(str(tmp_path / "none.txt"))
