"""keras_3t.collection.reader: read_collection, search_collection and `keras-3t search`."""

import json
import os

import numpy as np
import pytest

from keras_3t.collection import embed_collection
from keras_3t.collection import read_collection
from keras_3t.collection import search_collection
from keras_3t.evaluation import retrieval_metrics
from tests.helpers import run_python


@pytest.fixture(scope="module")
def embedded_scenes(test_scenes, tmp_path_factory):
    """The test scenes' images embedded by 3t_tiny, named as a preset (tests only read them)."""
    output = str(tmp_path_factory.mktemp("embedded") / "scenes")
    return embed_collection("3t_tiny", output, images=test_scenes["folder"], verbose=0)


def test_each_test_caption_finds_the_scene_the_model_ranks_first(
    embedded_scenes, test_scenes, tiny_3t
):
    texts = test_scenes["texts"]
    matches = search_collection(embedded_scenes.path, texts=texts, top_k=5)
    assert [len(m) for m in matches] == [5] * len(texts)
    assert all(m[0]["score"] >= m[1]["score"] >= m[4]["score"] for m in matches)
    scores = tiny_3t.encode_text(texts) @ tiny_3t.encode_image(test_scenes["images"]).T
    best, runner_up = np.sort(scores, axis=1)[:, [-1, -2]].T
    found = np.array([int(m[0]["id"][len("scene_") : -len(".png")]) for m in matches])
    clear = best - runner_up > 1e-5  # not a tie within float32 rounding
    np.testing.assert_array_equal(found[clear], scores.argmax(axis=1)[clear])
    # Recall@1 and @5 over the test set are the model's, as evaluate_model measures them.
    recall = retrieval_metrics(
        tiny_3t.encode_image(test_scenes["images"]),
        tiny_3t.encode_text(texts),
        np.arange(len(texts)),
        ks=(1, 5),
    )
    hits = found == np.arange(len(texts))
    assert abs(hits.mean() - recall["text_to_image_r1"]) <= (~clear).mean()
    top5 = [i in [int(m["id"][6:9]) for m in ms] for i, ms in enumerate(matches)]
    assert abs(np.mean(top5) - recall["text_to_image_r5"]) <= (~clear).mean() + 1e-9
    assert hits.mean() > 10 / len(texts)  # far above chance (1 in 178)
    print(f"search R@1 {hits.mean():.3f}, R@5 {np.mean(top5):.3f} over {len(texts)} captions")


def test_an_image_query_finds_its_own_file_first(embedded_scenes, test_scenes):
    with open(os.path.join(test_scenes["folder"], "scene_007.png"), "rb") as file:
        [matches] = embedded_scenes.search(images=[file.read()], top_k=2)
    assert matches[0]["id"] == "scene_007.png" and matches[0]["index"] == 7
    assert matches[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert matches[1]["score"] < matches[0]["score"]


def test_search_refuses_another_model_bad_queries_and_unfinished_embeddings(
    embedded_scenes, tmp_path
):
    with pytest.raises(ValueError, match="was embedded by another model"):
        embedded_scenes.search(texts=["a 1"], model="clip_tiny")
    with pytest.raises(ValueError, match="Query image 1 cannot be embedded: not JPEG"):
        embedded_scenes.search(images=[b"not an image"])
    with pytest.raises(ValueError, match="Give at least one query"):
        embedded_scenes.search()
    with pytest.raises(FileNotFoundError, match="holds no embeddings"):
        read_collection(str(tmp_path))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    manifest = json.load(open(os.path.join(embedded_scenes.path, "manifest.json")))
    (unfinished / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(ValueError, match="are not finished: run the same keras-3t embed"):
        read_collection(str(unfinished))


@pytest.mark.one_backend
def test_the_search_command_prints_ranked_matches_or_json(embedded_scenes, test_scenes):
    caption = test_scenes["texts"][1]
    code = f"""
from keras_3t.__main__ import main
main(["search", {embedded_scenes.path!r}, {caption!r}, "a 5", "--top-k", "3"])
main(["search", {embedded_scenes.path!r}, "a 5", "--top-k", "2", "--json"])
"""
    returncode, stdout, stderr = run_python(code)
    assert returncode == 0, stderr[-2000:]
    assert stderr == ""
    lines = stdout.splitlines()
    expected = search_collection(embedded_scenes.path, texts=[caption, "a 5"], top_k=3)
    assert lines[0] == json.dumps(caption) and lines[4] == '"a 5"'
    for line, match in zip(lines[1:4] + lines[5:8], expected[0] + expected[1]):
        assert line.split() == [str(match["rank"]), f"{match['score']:.4f}", match["id"]]
    [result] = json.loads(lines[8])
    assert result["query"] == "a 5" and result["matches"] == expected[1][:2]
