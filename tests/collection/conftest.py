"""The main job's quick test scenes as image files and a caption file, shared by the tests."""

import os

import pytest

from keras_3t.demo import digit_scenes
from keras_3t.demo import main_job


@pytest.fixture(scope="session")
def test_scenes(tmp_path_factory):
    """`{"folder", "captions", "images", "texts"}`: the scenes as PNG files
    (`scene_000.png`, ...) in `folder`, their captions one per line in
    `captions` (a `.txt`), and both in memory (uint8 images, caption
    strings). Tests only read them."""
    import tensorflow as tf

    folder = str(tmp_path_factory.mktemp("scenes"))
    budget = main_job.BUDGETS["quick"]
    scenes = main_job.scenes_with_distinct_captions(
        digit_scenes.make_scenes(budget["test_scenes"], "test", "clean", seed=0)
    )
    images = (scenes["images"] * 255).round().astype("uint8")
    os.makedirs(os.path.join(folder, "scenes"))
    for i, image in enumerate(images):
        with open(os.path.join(folder, "scenes", f"scene_{i:03d}.png"), "wb") as file:
            file.write(tf.io.encode_png(image).numpy())
    captions = os.path.join(folder, "captions.txt")
    with open(captions, "w") as file:
        file.writelines(f"{caption}\n" for caption in scenes["captions"])
    return {
        "folder": os.path.join(folder, "scenes"),
        "captions": captions,
        "images": images,
        "texts": [str(c) for c in scenes["captions"]],
    }


@pytest.fixture(scope="session")
def tiny_3t():
    from keras_3t import presets

    return presets.load("3t_tiny")
