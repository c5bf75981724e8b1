"""Tiny towers and models shared by the tests; the suite runs once per backend."""

import importlib.util
import json
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_3t import ImageTower
from keras_3t import TextTower
from keras_3t import ThirdTower
from keras_3t import ThreeTowerModel
from keras_3t.demo import toy

IMAGE_SIZE = 16
SEQUENCE_LENGTH = 4
EMBEDDING_DIM = 16
# The data-parallel checks (tests/distributed_*_check.py) train each mode:
# mode -> (local_loss, accumulation_steps).
DATA_PARALLEL_MODES = {"global": (False, 1), "local": (True, 1), "accumulated": (False, 2)}


def load_script(relative_path):
    """A script of the project (recipes/, benchmarks/) imported as a module."""
    path = os.path.join(os.path.dirname(__file__), "..", relative_path)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def tiny_vit(patch_size=4, hidden_dim=32):
    return keras_hub.models.ViTBackbone(
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        patch_size=patch_size,
        num_layers=1,
        num_heads=2,
        hidden_dim=hidden_dim,
        mlp_dim=2 * hidden_dim,
    )


def tiny_resnet():
    """A keras-hub CNN backbone with batch norm, standing in for a pretrained one."""
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],  # keras-hub requires 64 first
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(None, None, 3),
    )


def tiny_text_tower(**kwargs):
    config = dict(
        vocabulary_size=toy.VOCABULARY_SIZE,
        sequence_length=SEQUENCE_LENGTH,
        embedding_dim=EMBEDDING_DIM,
        hidden_dim=32,
        num_layers=1,
        num_heads=2,
        intermediate_dim=64,
    )
    config.update(kwargs)
    return TextTower(**config)


def tiny_model(objective="3t", third_backbone=None, shared_head=False, **kwargs):
    """A tiny 3T / LiT / CLIP model on 16×16 images and toy captions."""
    if objective == "lit":
        image_tower = ImageTower(third_backbone or tiny_resnet(), EMBEDDING_DIM, frozen=True)
    else:
        image_tower = ImageTower(tiny_vit(), EMBEDDING_DIM)
    third_tower = None
    if objective == "3t":
        third_tower = ThirdTower(
            third_backbone or tiny_resnet(), EMBEDDING_DIM, shared_head=shared_head
        )
    return ThreeTowerModel(
        image_tower=image_tower,
        text_tower=tiny_text_tower(),
        third_tower=third_tower,
        objective=objective,
        **kwargs,
    )


def write_digit_scene_captions(folder, count):
    """Real digit scenes as PNG files in `folder`, and `captions.csv` naming them.

    Returns the caption file's path.
    """
    import csv

    import tensorflow as tf

    from keras_3t.demo import digit_scenes

    scenes = digit_scenes.make_scenes(count, "train", "clean", seed=0)
    path = os.path.join(folder, "captions.csv")
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "caption"])
        for i, (image, caption) in enumerate(zip(scenes["images"], scenes["captions"])):
            name = f"scene_{i}.png"
            with open(os.path.join(folder, name), "wb") as png:
                png.write(tf.io.encode_png((image * 255).astype("uint8")).numpy())
            writer.writerow([name, caption])
    return path


def snapshot(variables):
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in variables}


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def text_of(batch):
    return {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}


def _as_stored(config):
    """A config as a `.keras` file stores it: JSON, so tuples become lists."""
    return json.loads(json.dumps(config))


def _assert_same_outputs(layer, inputs, expected, what):
    outputs = keras.tree.map_structure(to_numpy, layer(inputs))
    for name in expected:
        np.testing.assert_allclose(
            outputs[name], expected[name], atol=1e-6, err_msg=f"{what}: {name}"
        )


def run_round_trip_test(layer, inputs, directory):
    """Config, `.keras` and preset round trips of a tower or a model.

    In the manner of keras-hub's `TestCase.run_backbone_test`: `layer`
    rebuilt from its config has the same config and, given the same
    weights, the same outputs on `inputs`; a `.keras` file reloads it with
    equal outputs; and an object with `save_to_preset` (`ThreeTowerModel`)
    reloads from its preset folder with equal outputs too.

    Args:
        layer: a built tower or `ThreeTowerModel`.
        inputs: what `layer` is called on; its outputs are a dict.
        directory: a folder for the files (pytest's `tmp_path`).

    Returns:
        The objects reloaded from the `.keras` file and (or None) the preset.
    """
    expected = keras.tree.map_structure(to_numpy, layer(inputs))
    clone = layer.__class__.from_config(layer.get_config())
    assert _as_stored(clone.get_config()) == _as_stored(layer.get_config())
    clone(inputs)  # builds what a config leaves unbuilt (a tower's projection)
    clone.set_weights(layer.get_weights())
    _assert_same_outputs(clone, inputs, expected, "from_config")

    path = os.path.join(str(directory), "round_trip.keras")
    keras.saving.save_model(layer, path)
    from_file = keras.saving.load_model(path)
    assert type(from_file) is type(layer)
    _assert_same_outputs(from_file, inputs, expected, ".keras")

    from_preset = None
    if hasattr(layer, "save_to_preset"):
        from keras_3t import presets

        folder = layer.save_to_preset(os.path.join(str(directory), "round_trip_preset"))
        from_preset = presets.load(folder)
        _assert_same_outputs(from_preset, inputs, expected, "preset")
    return from_file, from_preset
