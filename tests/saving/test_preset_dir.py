"""keras_3t.saving.preset_dir: save_to_preset round-trips exactly, never
overwrites silently, and damage is named."""

import json
import os
import shutil

import numpy as np
import pytest

import keras_3t
from keras_3t import presets
from keras_3t.demo.digit_models import preset_path
from keras_3t.saving import preset_dir
from keras_3t.saving.preset_dir import CONFIG_FILE
from keras_3t.saving.preset_dir import WEIGHTS_FILE
from tests.helpers import folder_digest
from tests.helpers import snapshot
from tests.helpers import tiny_model
from tests.helpers import to_numpy
from tests.helpers import toy_preprocessor


def _trained_tiny_model():
    model = tiny_model("3t", preprocessor=toy_preprocessor())
    model.compile(learning_rate=1e-2)
    examples = {
        "images": np.random.default_rng(1).uniform(size=(8, 16, 16, 3)).astype("float32"),
        "captions": ["a red square", "a blue circle", "green square", "a red circle"] * 2,
    }
    model.fit(model.preprocessor(examples), batch_size=8, epochs=1, verbose=0)
    return model


def test_save_to_preset_then_load_round_trips_exactly(tmp_path):
    model = _trained_tiny_model()
    folder = str(tmp_path / "mine")
    model.save_to_preset(folder, metadata={"note": "test"})
    with open(os.path.join(folder, "metadata.json")) as file:
        metadata = json.load(file)
    assert metadata["note"] == "test"
    assert metadata["parameter_count"] == presets.parameter_counts(model)
    assert {"config.json", "model.weights.h5", "preprocessor.json", "tokenizer.json"} <= set(
        os.listdir(folder)
    )

    loaded = keras_3t.ThreeTowerModel.from_preset(folder)
    original, restored = snapshot(model.weights), snapshot(loaded.weights)
    assert original.keys() == restored.keys()
    for path in original:
        np.testing.assert_array_equal(original[path], restored[path], err_msg=path)
    captions = ["a red square", "green circle", "a blue square"]
    for key, value in model.preprocessor(captions).items():
        np.testing.assert_array_equal(to_numpy(value), to_numpy(loaded.preprocessor(captions)[key]))
    np.testing.assert_array_equal(
        to_numpy(model.encode_text(captions, alpha=0.5)),
        to_numpy(loaded.encode_text(captions, alpha=0.5)),
    )
    images = np.random.default_rng(2).uniform(size=(3, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(
        to_numpy(model.encode_image(images, alpha=0.5)),
        to_numpy(loaded.encode_image(images, alpha=0.5)),
    )
    assert loaded.get_config()["pair_weights"] == model.get_config()["pair_weights"]


def test_save_to_preset_never_overwrites_silently(tmp_path, monkeypatch):
    model = _trained_tiny_model()
    folder = str(tmp_path / "mine")
    model.save_to_preset(folder)
    before = folder_digest(folder)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save_to_preset(folder)

    # A save that fails half-way leaves the earlier preset as it was.
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(preset_dir.saving_lib, "save_weights_only", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save_to_preset(folder, overwrite=True)
    assert folder_digest(folder) == before
    assert os.listdir(tmp_path) == ["mine"]  # no staging folder left behind
    monkeypatch.undo()

    model.text_tower.projection.kernel.assign(np.zeros(model.text_tower.projection.kernel.shape))
    model.save_to_preset(folder, overwrite=True)
    assert folder_digest(folder) != before
    reloaded = presets.load(folder)
    assert not np.any(to_numpy(reloaded.text_tower.projection.kernel))


@pytest.fixture(scope="module")
def saved_template(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("template") / "saved")
    _trained_tiny_model().save_to_preset(folder)
    return folder


@pytest.fixture
def saved_folder(saved_template, tmp_path):
    return shutil.copytree(saved_template, str(tmp_path / "saved"))


def _break_config(folder):
    path = os.path.join(folder, CONFIG_FILE)
    with open(path) as file:
        config = json.load(file)
    config["config"]["text_tower"]["config"]["hidden_dim"] = 48
    with open(path, "w") as file:
        json.dump(config, file)


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda f: os.remove(os.path.join(f, WEIGHTS_FILE)), FileNotFoundError, "weights=False"),
        (
            lambda f: open(os.path.join(f, WEIGHTS_FILE), "wb").write(b"not hdf5"),
            ValueError,
            "corrupt",
        ),
        (lambda f: open(os.path.join(f, CONFIG_FILE), "w").write("{"), ValueError, "corrupt"),
        (_break_config, ValueError, "disagree"),
    ],
    ids=["missing weights", "corrupt weights", "corrupt config", "mismatched config"],
)
def test_a_damaged_folder_gives_a_clear_error_and_stays_as_it_was(
    saved_folder, damage, error, message
):
    damage(saved_folder)
    before = folder_digest(saved_folder)
    with pytest.raises(error, match=message):
        presets.load(saved_folder)
    assert folder_digest(saved_folder) == before


def test_a_keras_hub_backbone_folder_is_not_a_3t_preset():
    with pytest.raises(ValueError, match="third_tower="):
        presets.load(preset_path("digit"))
