"""keras_3t.collection.writer: embed_collection and `keras-3t embed`."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_3t.collection import BadItemError
from keras_3t.collection import embed_collection
from tests.helpers import folder_digest
from tests.helpers import png
from tests.helpers import whole_and_truncated_tars


def lines_of(path):
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_images_and_captions_embed_as_encode_image_and_encode_text(test_scenes, tiny_3t, tmp_path):
    images = embed_collection(
        tiny_3t,
        str(tmp_path / "images"),
        images=test_scenes["folder"],
        alpha=0.5,
        batch_size=32,
        part_size=50,
        verbose=0,
    )
    count = len(test_scenes["images"])
    assert images.ids == [f"scene_{i:03d}.png" for i in range(count)]
    assert images.embeddings.dtype == np.float32
    np.testing.assert_allclose(
        images.embeddings, tiny_3t.encode_image(test_scenes["images"], 0.5), atol=1e-5
    )
    captions = embed_collection(
        tiny_3t,
        str(tmp_path / "captions"),
        captions=test_scenes["captions"],
        alpha=0.5,
        batch_size=32,
        part_size=50,
        verbose=0,
    )
    assert captions.ids == [f"line {i + 1}" for i in range(count)]
    assert captions.captions == test_scenes["texts"]
    np.testing.assert_allclose(
        captions.embeddings, tiny_3t.encode_text(test_scenes["texts"], 0.5), atol=1e-5
    )
    manifest = captions.manifest
    assert manifest["complete"] and manifest["count"] == count and manifest["skipped"] == {}
    assert manifest["settings"]["path_weights"] == {"main": 0.5, "third": 0.5}
    assert sorted(os.listdir(tmp_path / "captions")) == [
        "embeddings.npy",
        "items.jsonl",
        "manifest.json",
        "skipped.jsonl",
    ]


@pytest.mark.one_backend
def test_killed_by_sigkill_the_same_command_finishes_as_if_never_stopped(tmp_path):
    """The kill is the backend's no more than the files are: one backend.
    Every backend resumes a stopped run to the same bytes
    (test_a_bad_image_stops_the_run_naming_it_or_is_skipped_and_listed)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(48):
        (folder / f"{i:02d}.png").write_bytes(png(5 * i))
    output = str(tmp_path / "killed")
    flags = ["--images", str(folder), "--part-size", "4", "--batch-size", "2"]
    command = [sys.executable, "-m", "keras_3t", "embed", "3t_tiny", "--output", output, *flags]
    parts = os.path.join(output, ".parts")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    # Killed as soon as its first part is written, long before its last.
    while not (os.path.isdir(parts) and any(n.endswith(".npz") for n in os.listdir(parts))):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no part written in 300 s"
        time.sleep(0.005)
    process.kill()
    process.communicate()
    written = [n for n in os.listdir(parts) if n.endswith(".npz")]
    assert not os.path.exists(os.path.join(output, "embeddings.npy"))
    assert 0 < len(written) < 12
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip().endswith(f"48 images embedded in {output}")
    whole = embed_collection(
        "3t_tiny",
        str(tmp_path / "whole"),
        images=str(folder),
        part_size=4,
        batch_size=2,
        verbose=0,
    )
    assert folder_digest(output) == folder_digest(whole.path)


@pytest.fixture
def bad_images(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, payload in [
        ("a.png", png(10)),
        ("b.jpg", b"not an image"),
        ("c.png", png(200)),
        ("d.png", b""),
        ("e.png", png(90)[:40]),
    ]:
        (folder / name).write_bytes(payload)
    return str(folder)


def test_a_bad_image_stops_the_run_naming_it_or_is_skipped_and_listed(
    bad_images, tiny_3t, tmp_path
):
    output = str(tmp_path / "out")
    sizes = {"part_size": 1, "batch_size": 1, "verbose": 0}
    with pytest.raises(BadItemError) as error:
        embed_collection(tiny_3t, output, images=bad_images, **sizes)
    assert str(error.value).startswith(
        "Undecodable image (not JPEG, PNG, GIF, BMP or WebP data): b.jpg - pass "
        "on_bad_data='skip' (--on-bad-data skip)"
    )
    # Stopped after its first part, the same folder goes on with skip, listing
    # what it left out; it ends as a run that never stopped.
    collection = embed_collection(tiny_3t, output, images=bad_images, on_bad_data="skip", **sizes)
    whole = embed_collection(
        tiny_3t, str(tmp_path / "whole"), images=bad_images, on_bad_data="skip", **sizes
    )
    assert folder_digest(output) == folder_digest(whole.path)
    assert collection.ids == ["a.png", "c.png"]
    assert collection.manifest["skipped"] == {"undecodable_image": 3}
    skipped = lines_of(os.path.join(output, "skipped.jsonl"))
    assert [(s["id"], s["reason"]) for s in skipped] == [
        ("b.jpg", "not JPEG, PNG, GIF, BMP or WebP data"),
        ("d.png", "no image data"),
        ("e.png", "truncated or corrupt"),
    ]
    good = np.stack([np.full((8, 8, 3), v, "uint8") for v in (10, 200)])
    np.testing.assert_allclose(collection.embeddings, tiny_3t.encode_image(good), atol=1e-5)


def test_an_empty_caption_stops_the_run_naming_its_line_or_is_skipped(tiny_3t, tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_text("a 1\n  \na 2\n")
    with pytest.raises(ValueError, match="on_bad_data must be one of .*; got 'drop'"):
        embed_collection(tiny_3t, str(tmp_path / "out"), captions=str(captions), on_bad_data="drop")
    assert not os.path.exists(tmp_path / "out")
    with pytest.raises(BadItemError, match=r"^Empty caption \(empty\): captions.txt, line 2 - "):
        embed_collection(tiny_3t, str(tmp_path / "out"), captions=str(captions), verbose=0)
    collection = embed_collection(
        tiny_3t, str(tmp_path / "out"), captions=str(captions), on_bad_data="skip", verbose=0
    )
    assert collection.ids == ["line 1", "line 3"] and collection.captions == ["a 1", "a 2"]
    assert lines_of(os.path.join(collection.path, "skipped.jsonl")) == [
        {
            "id": "line 2",
            "kind": "empty_caption",
            "where": "captions.txt, line 2",
            "reason": "empty",
        },
    ]


def test_shards_keep_keys_and_captions_and_a_damaged_shard_is_listed(tiny_3t, tmp_path):
    whole_and_truncated_tars(str(tmp_path))
    output = str(tmp_path / "out")
    with pytest.raises(
        BadItemError, match="00001.tar: unreadable tar shard .* Or pass on_bad_data"
    ):
        embed_collection(tiny_3t, output, images=str(tmp_path), part_size=4, verbose=0)
    collection = embed_collection(
        tiny_3t, output, images=str(tmp_path), on_bad_data="skip", part_size=4, verbose=0
    )
    assert collection.ids[:6] == [f"{i:09d}" for i in range(6)]
    assert collection.captions[:6] == [f"scene {i}" for i in range(6)]
    assert 6 < len(collection) < 12  # what the damaged shard held before the damage
    [skipped] = lines_of(os.path.join(collection.path, "skipped.jsonl"))
    assert skipped["id"] == "00001.tar" and skipped["kind"] == "unreadable_shard"


def test_an_output_folder_is_never_silently_replaced(tiny_3t, tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_text("a 1\na 2\n")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="is not empty and holds no embeddings"):
        embed_collection(tiny_3t, str(taken), captions=str(captions), verbose=0)
    assert (taken / "thesis.tex").read_text() == "years of work"
    output = str(tmp_path / "out")
    first = embed_collection(tiny_3t, output, captions=str(captions), verbose=0)
    stamp = os.stat(os.path.join(output, "embeddings.npy")).st_mtime_ns
    assert embed_collection(tiny_3t, output, captions=str(captions), verbose=0).ids == first.ids
    assert os.stat(os.path.join(output, "embeddings.npy")).st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match=r"made otherwise \(batch_size was 64, now 8\)"):
        embed_collection(tiny_3t, output, captions=str(captions), batch_size=8, verbose=0)
    captions.write_text("a 1\na 3\n")
    with pytest.raises(FileExistsError, match="the caption file changed"):
        embed_collection(tiny_3t, output, captions=str(captions), verbose=0)
    replaced = embed_collection(tiny_3t, output, captions=str(captions), overwrite=True, verbose=0)
    assert replaced.captions == ["a 1", "a 3"]
