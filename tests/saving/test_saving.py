"""Safe loading: code in a saved config, newer versions, damaged files.

Every refusal must leave the files as they were (`folder_digest` before and
after).
"""

import json
import os
import shutil
import zipfile

import keras
import numpy as np
import pytest

import keras_3t
from keras_3t import ThreeTowerModel
from keras_3t import presets
from keras_3t import saving
from keras_3t.saving import preset_loader
from keras_3t.saving.preset_dir import CONFIG_FILE
from keras_3t.saving.preset_dir import METADATA_FILE
from keras_3t.saving.preset_dir import WEIGHTS_FILE
from tests.helpers import IMAGE_SIZE
from tests.helpers import folder_digest
from tests.helpers import tiny_model
from tests.helpers import tiny_text_tower
from tests.helpers import to_numpy

NEWER = "99.0.0"


def _doubling_backbone():
    """A functional image model whose Lambda layer is arbitrary Python code."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    features = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    features = keras.layers.Lambda(lambda x: x * 2.0, name="doubling")(features)
    return keras.Model(inputs, features)


@pytest.fixture(scope="module")
def lambda_model():
    return tiny_model("3t", third_backbone=_doubling_backbone())


@pytest.fixture(scope="module")
def clip_model():
    return tiny_model("clip")


def _rewrite_archive(path, edit):
    """Rewrites a `.keras` file with `edit(members)` applied to its members."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _edit_json(path, edit):
    with open(path) as file:
        value = json.load(file)
    edit(value)
    with open(path, "w") as file:
        json.dump(value, file)


def _assert_refused_unchanged(load, folder, error, match):
    before = folder_digest(folder)
    with pytest.raises(error, match=match):
        load()
    assert folder_digest(folder) == before


# --- Python code in a saved config -------------------------------------------


def test_a_lambda_in_a_keras_file_is_refused_by_default(lambda_model, tmp_path):
    path = str(tmp_path / "model.keras")
    lambda_model.save(path)
    # Keras itself refuses it: ThreeTowerModel.from_config does not step
    # around safe mode.
    _assert_refused_unchanged(
        lambda: keras.saving.load_model(path), str(tmp_path), ValueError, "Lambda"
    )
    _assert_refused_unchanged(
        lambda: saving.load_model(path),
        str(tmp_path),
        ValueError,
        r"model\.keras contains Python code .*Lambda 'doubling'.*safe_mode=False",
    )
    # Trusted, it loads and runs the code.
    loaded = saving.load_model(path, safe_mode=False)
    images = np.random.default_rng(0).uniform(size=(2, IMAGE_SIZE, IMAGE_SIZE, 3))
    np.testing.assert_allclose(
        to_numpy(loaded.third_tower.backbone(images)),
        to_numpy(lambda_model.third_tower.backbone(images)),
        atol=1e-6,
    )


def test_a_lambda_in_a_preset_folder_is_refused_by_default(lambda_model, tmp_path):
    folder = lambda_model.save_to_preset(str(tmp_path / "preset"))
    message = r"config\.json contains Python code .*Lambda 'doubling'.*safe_mode=False"
    _assert_refused_unchanged(lambda: presets.load(folder), folder, ValueError, message)
    _assert_refused_unchanged(
        lambda: ThreeTowerModel.from_preset(folder), folder, ValueError, message
    )
    loaded = presets.load(folder, safe_mode=False)
    assert loaded.third_tower.backbone.get_layer("doubling") is not None


def test_keras_safe_mode_still_refuses_code_the_early_check_misses(
    lambda_model, tmp_path, monkeypatch
):
    folder = lambda_model.save_to_preset(str(tmp_path / "preset"))
    monkeypatch.setattr(preset_loader, "check_no_code", lambda *args: None)
    _assert_refused_unchanged(lambda: presets.load(folder), folder, ValueError, "Lambda")
    with open(os.path.join(folder, CONFIG_FILE)) as file:
        config = json.load(file)["config"]
    with pytest.raises(ValueError, match="Lambda"):
        ThreeTowerModel.from_config(config)


# --- Files from a newer keras-3t ---------------------------------------------


def test_a_preset_from_a_newer_version_is_refused_before_anything_is_built(clip_model, tmp_path):
    folder = clip_model.save_to_preset(str(tmp_path / "preset"))
    _edit_json(os.path.join(folder, METADATA_FILE), lambda m: m.update(keras_3t_version=NEWER))
    # A config this version cannot read: the version check comes first.
    with open(os.path.join(folder, CONFIG_FILE), "w") as file:
        file.write("{")
    _assert_refused_unchanged(
        lambda: presets.load(folder),
        folder,
        ValueError,
        rf"metadata\.json was saved by keras-3t {NEWER}; this is keras-3t "
        rf"{keras_3t.__version__}.*Upgrade",
    )


@pytest.mark.parametrize("version, loads", [(NEWER, False), ("0.0.1", True), (None, True)])
def test_a_keras_file_from_a_newer_version_is_refused(clip_model, tmp_path, version, loads):
    path = str(tmp_path / "model.keras")
    clip_model.save(path)

    def set_version(members):
        config = json.loads(members["config.json"])
        assert config["config"].pop("keras_3t_version") == keras_3t.__version__
        if version is not None:  # None: a file saved before versions were recorded
            config["config"]["keras_3t_version"] = version
        members["config.json"] = json.dumps(config).encode()

    _rewrite_archive(path, set_version)
    if loads:
        assert isinstance(saving.load_model(path), ThreeTowerModel)
        return
    newer = rf"saved by keras-3t {NEWER}; this is keras-3t {keras_3t.__version__}"
    _assert_refused_unchanged(
        lambda: keras.saving.load_model(path), str(tmp_path), ValueError, newer
    )
    _assert_refused_unchanged(
        lambda: saving.load_model(path), str(tmp_path), ValueError, rf"model\.keras .*{newer}"
    )


def test_an_unreadable_version_is_reported_as_damage(clip_model, tmp_path):
    folder = clip_model.save_to_preset(str(tmp_path / "preset"))
    _edit_json(os.path.join(folder, METADATA_FILE), lambda m: m.update(keras_3t_version="x.y"))
    _assert_refused_unchanged(
        lambda: presets.load(folder), folder, ValueError, "not a version number"
    )


# --- Damaged weights -----------------------------------------------------------


def _halve(path):
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(data[: len(data) // 2])


def _randomize(path):
    size = os.path.getsize(path)
    with open(path, "wb") as file:
        file.write(np.random.default_rng(0).bytes(size))


@pytest.mark.parametrize("damage", [_halve, _randomize], ids=["truncated", "random bytes"])
def test_damaged_preset_weights_give_a_clear_error(clip_model, tmp_path, damage):
    folder = clip_model.save_to_preset(str(tmp_path / "preset"))
    weights = os.path.join(folder, WEIGHTS_FILE)
    damage(weights)
    _assert_refused_unchanged(
        lambda: presets.load(folder),
        folder,
        ValueError,
        rf"{WEIGHTS_FILE} is corrupt: not a readable HDF5 weights file",
    )


def test_preset_weights_of_another_model_give_a_clear_error(clip_model, tmp_path):
    folder = clip_model.save_to_preset(str(tmp_path / "preset"))
    other = tiny_model("3t").save_to_preset(str(tmp_path / "other"))
    shutil.copy(os.path.join(other, WEIGHTS_FILE), os.path.join(folder, WEIGHTS_FILE))
    _assert_refused_unchanged(
        lambda: presets.load(folder), folder, ValueError, "the config and the weights file disagree"
    )


@pytest.mark.parametrize("damage", [_halve, _randomize], ids=["truncated", "random bytes"])
def test_a_damaged_keras_file_gives_a_clear_error(clip_model, tmp_path, damage):
    path = str(tmp_path / "model.keras")
    clip_model.save(path)
    damage(path)
    _assert_refused_unchanged(
        lambda: saving.load_model(path),
        str(tmp_path),
        ValueError,
        r"model\.keras is corrupt or truncated: not a readable \.keras archive",
    )


def test_a_flipped_byte_in_a_keras_file_fails_its_checksum(clip_model, tmp_path):
    path = str(tmp_path / "model.keras")
    clip_model.save(path)
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("model.weights.h5")
    with open(path, "r+b") as file:
        # The middle of the stored (uncompressed) weights.
        file.seek(member.header_offset + len(member.FileHeader()) + member.file_size // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))
    _assert_refused_unchanged(
        lambda: saving.load_model(path), str(tmp_path), ValueError, "fails its checksum"
    )


def test_damaged_weights_inside_a_keras_file_give_a_clear_error(clip_model, tmp_path):
    path = str(tmp_path / "model.keras")
    clip_model.save(path)

    def truncate_weights(members):
        weights = members["model.weights.h5"]
        members["model.weights.h5"] = weights[: len(weights) // 2]

    _rewrite_archive(path, truncate_weights)
    _assert_refused_unchanged(
        lambda: saving.load_model(path),
        str(tmp_path),
        ValueError,
        "is corrupt: its weights are not a readable HDF5 file",
    )


def test_a_keras_file_whose_config_has_fewer_layers_than_its_weights_is_refused(
    clip_model, tmp_path
):
    # Keras alone loads this without complaint, leaving weights unused.
    two_layers = ThreeTowerModel(
        image_tower=clip_model.image_tower,
        text_tower=tiny_text_tower(num_layers=2),
        objective="clip",
    )
    path = str(tmp_path / "model.keras")
    two_layers.save(path)

    def one_layer(members):
        config = json.loads(members["config.json"])
        config["config"]["text_tower"]["config"]["num_layers"] = 1
        members["config.json"] = json.dumps(config).encode()

    _rewrite_archive(path, one_layer)
    _assert_refused_unchanged(
        lambda: saving.load_model(path),
        str(tmp_path),
        ValueError,
        r"its weights do not fit its config \(the file holds \d+ arrays, the model has \d+",
    )
