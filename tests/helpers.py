"""What the tests share: tiny towers and models, toy data and tasks, the
round-trip check, running Python in a fresh process, and virtual
environments of their own for other packages."""

import fcntl
import hashlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import tarfile

import keras
import keras_hub
import numpy as np

from keras_3t import ImageTower
from keras_3t import TextTower
from keras_3t import ThirdTower
from keras_3t import ThreeTowerModel
from keras_3t import console
from keras_3t.data import from_caption_file
from keras_3t.demo import toy
from keras_3t.demo.toy import toy_batch
from keras_3t.preprocessing import RESERVED_TOKENS
from keras_3t.preprocessing import ThreeTowerPreprocessor
from keras_3t.preprocessing import caption_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SIZE = 16
SEQUENCE_LENGTH = 4
EMBEDDING_DIM = 16
# The toy captions' words, within the tiny text tower's 15 token ids.
TOY_WORDS = ["a", "red", "blue", "green", "square", "circle"]
TINY_PRESETS = ["3t_tiny", "lit_tiny", "clip_tiny"]
PAPER_PRESETS = ["3t_vitb16", "lit_vitb16", "clip_vitb16", "3t_vitl16", "lit_vitl16", "clip_vitl16"]
# The data-parallel checks (tests/distributed/*_check.py) train each mode:
# mode -> (local_loss, accumulation_steps).
DATA_PARALLEL_MODES = {"global": (False, 1), "local": (True, 1), "accumulated": (False, 2)}


def load_script(relative_path):
    """A script of the project (recipes/, benchmarks/) imported as a module."""
    path = os.path.join(ROOT, relative_path)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def two_frozen_towers():
    """Two named frozen towers, for `third_towers=`: a small CNN with batch norm, and a ViT."""
    cnn = keras.Sequential(
        [
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
            keras.layers.Conv2D(8, 3, strides=2),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ]
    )
    return {
        "digits": ThirdTower(cnn, EMBEDDING_DIM),
        "thickness": ThirdTower(tiny_vit(hidden_dim=16), EMBEDDING_DIM),
    }


def tiny_model(objective="3t", third_backbone=None, shared_head=False, **kwargs):
    """A tiny 3T / LiT / CLIP model on 16×16 images and toy captions.

    With `third_towers=` (e.g. `two_frozen_towers()`), a 3T model with those
    frozen towers instead of one.
    """
    if objective == "lit":
        image_tower = ImageTower(third_backbone or tiny_resnet(), EMBEDDING_DIM, frozen=True)
    else:
        image_tower = ImageTower(tiny_vit(), EMBEDDING_DIM)
    third_tower = None
    if objective == "3t" and "third_towers" not in kwargs:
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


def folder_digest(path):
    """A digest of every file's name and bytes under `path`."""
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            file_path = os.path.join(root, name)
            digest.update(os.path.relpath(file_path, path).encode())
            with open(file_path, "rb") as file:
                digest.update(file.read())
    return digest.hexdigest()


def toy_preprocessor(sequence_length=SEQUENCE_LENGTH):
    """A preprocessor for the toy captions."""
    return ThreeTowerPreprocessor(
        caption_tokenizer([*RESERVED_TOKENS, *TOY_WORDS]), sequence_length
    )


def toy_evaluation_tasks(seed=0):
    """Retrieval, zero-shot and few-shot tasks on the toy squares."""
    batch = toy_batch(24, seed=seed)
    colours = batch["token_ids"][:, 0] - 1
    return dict(
        retrieval={
            "images": batch["images"],
            "texts": text_of(batch),
            "text_to_image": np.arange(24),
        },
        zero_shot={
            "images": batch["images"],
            "labels": colours,
            "class_names": list(toy.COLOUR_NAMES),
            "tokenizer": toy.tokenize,
            "templates": ["{} square", "a {}"],
        },
        few_shot={
            "train_images": toy_batch(64, seed=seed + 1)["images"],
            "train_labels": toy_batch(64, seed=seed + 1)["token_ids"][:, 0] - 1,
            "test_images": batch["images"],
            "test_labels": colours,
            "shots": (1, 2),
        },
    )


def train_recipe_briefly(data, output, *flags):
    """recipes/train.py on `data`, 2 steps of 4, in this process: (the recipe, its history)."""
    recipe = load_script("recipes/train.py")
    arguments = ["--data", data, "--batch-size", "4", "--steps-per-epoch", "2"]
    return recipe, recipe.main([*arguments, "--output", str(output), *flags])


def digit_scene_source(tmp_path, count=16):
    """Digit scenes written as a caption file, and its source."""
    path = write_digit_scene_captions(str(tmp_path), count)
    return path, from_caption_file(path, image_root=str(tmp_path))


def run_python(code, cwd=None, **env):
    """`python -c code` in a fresh process; returns (returncode, stdout, stderr)."""
    environment = dict(os.environ)
    environment.pop(console.VERBOSE_ENVIRONMENT, None)
    environment.update(env)
    process = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True
    )
    return process.returncode, process.stdout, process.stderr


def native_lines(text):
    """The lines of `text` that native libraries (TensorFlow, XLA) wrote."""
    return [line for line in text.splitlines() if console.is_native_log_line(line.encode())]


def free_ports(count):
    """`count` TCP ports on 127.0.0.1 that nothing listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def pinned(*names):
    """`name==version` for each name, at the version constraints.txt pins."""
    with open(os.path.join(ROOT, "constraints.txt")) as file:
        pins = dict(line.strip().split("==") for line in file if "==" in line)
    return [f"{name}=={pins[name]}" for name in names]


def package_venv(name, packages, remove=()):
    """A virtual environment of its own holding `packages`, made once per machine.

    It is made under the user's cache folder, `keras-3t/<name>-<digest of
    the packages>` (`KERAS_3T_<NAME>_VENV` overrides where), and installed
    from the package registry; test workers that ask at once make it once,
    the others waiting on a lock.

    Args:
        name: what the environment is for (`"img2dataset"`, `"onnxruntime"`).
        packages: pip requirements, pinned (`pinned(...)`).
        remove: packages to uninstall afterwards: dependencies the
            environment must not hold (tensorflow's keras, say).

    Returns:
        The environment's folder; its Python is `bin/python`.
    """
    digest = hashlib.sha256(" ".join([*packages, *remove]).encode()).hexdigest()[:12]
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    default = os.path.join(cache, "keras-3t", f"{name}-{digest}")
    venv = os.environ.get(f"KERAS_3T_{name.upper().replace('-', '_')}_VENV", default)
    installed = os.path.join(venv, "installed")
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(installed):
            subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
            _pip(venv, "install", *packages)
            if remove:
                _pip(venv, "uninstall", "-y", *remove)
            with open(installed, "w") as file:
                file.write(" ".join(packages) + "\n")
    return venv


def _pip(venv, *arguments):
    process = subprocess.run(
        [os.path.join(venv, "bin", "pip"), "-q", *arguments], capture_output=True, text=True
    )
    if process.returncode:
        raise RuntimeError(f"pip {' '.join(arguments)} failed:\n{process.stderr[-3000:]}")


def write_tar(path, members):
    """A tar file of `(name, payload bytes)` members, as webdataset shards are."""
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def whole_and_truncated_tars(folder):
    """`00000.tar` with 6 scenes (keys `000000000`...; PNG and caption
    `scene i`) and `00001.tar`, the same cut short in the middle."""
    members = []
    for i in range(6):
        members += [(f"{i:09d}.png", png(20 * i)), (f"{i:09d}.txt", f"scene {i}".encode())]
    whole, truncated = os.path.join(folder, "00000.tar"), os.path.join(folder, "00001.tar")
    write_tar(whole, members)
    with open(whole, "rb") as file:
        payload = file.read()
    with open(truncated, "wb") as file:
        file.write(payload[: len(payload) // 2 + 100])
    return whole, truncated


def png(value):
    """An 8 × 8 PNG of one gray value."""
    import tensorflow as tf

    return tf.io.encode_png(np.full((8, 8, 3), value, "uint8")).numpy()
