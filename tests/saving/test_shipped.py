"""keras_3t.saving.shipped: the tiny presets' weights in saved_models/ load
offline and reproduce their recorded results."""

import json
import os

import keras
import numpy as np
import pytest

from keras_3t import presets
from keras_3t.demo import digit_scenes
from keras_3t.evaluation import evaluate_model
from keras_3t.saving.shipped import shipped_path
from tests.helpers import to_numpy

# Embeddings of 3t_tiny on fixed inputs, written on PyTorch by
# `KERAS_BACKEND=torch python -m tests.saving.test_shipped`; every backend must
# reproduce them.
REFERENCE = os.path.join(os.path.dirname(__file__), "..", "reference", "3t_tiny_embeddings.npz")
REFERENCE_CAPTIONS = ["a 3 above a 7", "a 1", "two digits: 0 and 5", "a 9 left of a 2"]


def _reference_embeddings(model):
    images = np.random.default_rng(0).uniform(size=(4, 56, 56, 3)).astype("float32")
    return {
        "images": to_numpy(model.encode_image(images, alpha=0.5)),
        "texts": to_numpy(model.encode_text(REFERENCE_CAPTIONS, alpha=0.5)),
    }


@pytest.fixture(scope="module")
def three_t_tiny():
    return presets.load("3t_tiny")


def test_3t_tiny_loads_offline_and_gives_the_reference_embeddings(three_t_tiny):
    model = three_t_tiny
    reference = np.load(REFERENCE)
    embeddings = _reference_embeddings(model)
    np.testing.assert_allclose(embeddings["images"], reference["images"], atol=1e-5)
    np.testing.assert_allclose(embeddings["texts"], reference["texts"], atol=1e-5)


def test_3t_tiny_reproduces_its_recorded_results(three_t_tiny):
    """Weights and tokenizer load right: the demo's evaluation comes out again."""
    from keras_3t.demo.main_job import BUDGETS
    from keras_3t.demo.main_job import evaluation_tasks

    folder = shipped_path(presets.PRESETS["3t_tiny"]["weights"])
    with open(os.path.join(folder, "metadata.json")) as file:
        metadata = json.load(file)
    model = three_t_tiny
    tasks = evaluation_tasks(model.preprocessor, BUDGETS["default"], metadata["seed"])
    metrics = evaluate_model(model, **tasks)
    for key in ("zero_shot_top1", "image_to_text_r1", "text_to_image_r1"):
        assert metrics[key] == pytest.approx(metadata["metrics"][key], abs=0.01), key


@pytest.mark.parametrize("name, at_least", [("lit_tiny", 0.9), ("clip_tiny", 0.25)])
def test_lit_and_clip_tiny_load_trained(name, at_least):
    # Zero-shot digit classification on held-out scenes (chance 0.1); the
    # demo measured 0.942 (LiT) and 0.366 (CLIP) on 500 of them.
    task = digit_scenes.single_digit_task(200, "test", seed=1)
    model = presets.load(name)
    metrics = evaluate_model(model, zero_shot={**task, "tokenizer": model.preprocessor})
    assert metrics["zero_shot_top1"] >= at_least


if __name__ == "__main__":  # Writes REFERENCE; run on PyTorch.
    assert keras.backend.backend() == "torch"
    np.savez(REFERENCE, **_reference_embeddings(presets.load("3t_tiny")))
    print(f"wrote {REFERENCE}")
