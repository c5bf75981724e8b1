"""keras_3t.presets: the registry, load, save_to_preset, and their errors."""

import hashlib
import json
import os
import shutil

import keras
import keras_hub
import numpy as np
import pytest
import requests

import keras_3t
from keras_3t import presets
from keras_3t.demo import digit_scenes
from keras_3t.demo.digit_models import preset_path
from keras_3t.evaluation import evaluate_model
from keras_3t.presets import WeightsUnavailableError
from keras_3t.saving import preset_dir
from keras_3t.saving.preset_dir import CONFIG_FILE
from keras_3t.saving.preset_dir import WEIGHTS_FILE
from keras_3t.saving.shipped import shipped_path
from tests.conftest import snapshot
from tests.conftest import tiny_model
from tests.conftest import to_numpy
from tests.test_preprocessing import _preprocessor

TINY = ["3t_tiny", "lit_tiny", "clip_tiny"]
PAPER = ["3t_vitb16", "lit_vitb16", "clip_vitb16", "3t_vitl16", "lit_vitl16", "clip_vitl16"]
# Embeddings of 3t_tiny on fixed inputs, written on PyTorch by
# `KERAS_BACKEND=torch python -m tests.test_presets`; every backend must
# reproduce them.
REFERENCE = os.path.join(os.path.dirname(__file__), "data", "3t_tiny_embeddings.npz")
REFERENCE_CAPTIONS = ["a 3 above a 7", "a 1", "two digits: 0 and 5", "a 9 left of a 2"]


def _folder_digest(path):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            file_path = os.path.join(root, name)
            digest.update(os.path.relpath(file_path, path).encode())
            with open(file_path, "rb") as file:
                digest.update(file.read())
    return digest.hexdigest()


def _reference_embeddings(model):
    images = np.random.default_rng(0).uniform(size=(4, 56, 56, 3)).astype("float32")
    return {
        "images": to_numpy(model.encode_image(images, alpha=0.5)),
        "texts": to_numpy(model.encode_text(REFERENCE_CAPTIONS, alpha=0.5)),
    }


def _trained_tiny_model():
    model = tiny_model("3t", preprocessor=_preprocessor())
    model.compile(learning_rate=1e-2)
    examples = {
        "images": np.random.default_rng(1).uniform(size=(8, 16, 16, 3)).astype("float32"),
        "captions": ["a red square", "a blue circle", "green square", "a red circle"] * 2,
    }
    model.fit(model.preprocessor(examples), batch_size=8, epochs=1, verbose=0)
    return model


# --- The registry ------------------------------------------------------------


def test_every_preset_is_described_with_its_parameter_counts():
    assert presets.names() == sorted(PAPER + TINY)
    assert presets.list() == presets.names()
    for name in presets.names():
        preset = presets.PRESETS[name]
        assert preset["description"] and preset["objective"] in ("3t", "lit", "clip")
        counts = preset["parameter_count"]
        assert counts["total"] >= counts["trainable"] > 0
        text = presets.describe(name)
        assert name in text and f"{counts['total'] / 1e6:.2f} M" in text


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_build_fresh_with_the_registered_counts(name):
    model = presets.load(name, weights=False)
    assert presets.parameter_counts(model) == presets.PRESETS[name]["parameter_count"]
    assert model.optimizer is not None  # compiled


def test_vitb16_builds_offline_with_the_registered_counts():
    model = presets.load("3t_vitb16", weights=False, third_tower_weights=False, preprocessor=False)
    assert presets.parameter_counts(model) == presets.PRESETS["3t_vitb16"]["parameter_count"]
    # The image tower is a ViT-B/16 (keras-hub's own count for its
    # ImageNet-21k preset, ≈ 86 M) plus a 768 × 768 projection.
    vit_b16 = keras_hub.models.ViTBackbone.presets["vit_base_patch16_224_imagenet21k"]
    assert model.image_tower.backbone.count_params() == vit_b16["metadata"]["params"]
    assert model.third_tower.backbone.count_params() == vit_b16["metadata"]["params"]
    assert model.image_tower.count_params() == vit_b16["metadata"]["params"] + 768 * 768


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in PAPER if name != "3t_vitb16"])
def test_paper_presets_build_offline_with_the_registered_counts(name):
    model = presets.load(name, weights=False, third_tower_weights=False, preprocessor=False)
    assert presets.parameter_counts(model) == presets.PRESETS[name]["parameter_count"]


# --- The shipped tiny presets ------------------------------------------------


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
    # demo measured 0.944 (LiT) and 0.394 (CLIP) on 500 of them.
    task = digit_scenes.single_digit_task(200, "test", seed=1)
    model = presets.load(name)
    metrics = evaluate_model(model, zero_shot={**task, "tokenizer": model.preprocessor})
    assert metrics["zero_shot_top1"] >= at_least


# --- save_to_preset and load round trip --------------------------------------


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
    before = _folder_digest(folder)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save_to_preset(folder)

    # A save that fails half-way leaves the earlier preset as it was.
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(preset_dir.saving_lib, "save_weights_only", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save_to_preset(folder, overwrite=True)
    assert _folder_digest(folder) == before
    assert os.listdir(tmp_path) == ["mine"]  # no staging folder left behind
    monkeypatch.undo()

    model.text_tower.projection.kernel.assign(np.zeros(model.text_tower.projection.kernel.shape))
    model.save_to_preset(folder, overwrite=True)
    assert _folder_digest(folder) != before
    reloaded = presets.load(folder)
    assert not np.any(to_numpy(reloaded.text_tower.projection.kernel))


# --- Errors --------------------------------------------------------------------


def test_an_unknown_name_lists_the_presets_and_the_closest():
    with pytest.raises(ValueError, match=r"Did you mean '3t_vitb16'\?.*clip_tiny"):
        presets.load("3t_vitb61")
    with pytest.raises(ValueError, match="Unknown preset"):
        presets.describe("vit")
    with pytest.raises(ValueError, match="Unknown override"):
        presets.load("3t_tiny", weights=False, embeding_dim=3)


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
    before = _folder_digest(saved_folder)
    with pytest.raises(error, match=message):
        presets.load(saved_folder)
    assert _folder_digest(saved_folder) == before


def test_a_keras_hub_backbone_folder_is_not_a_3t_preset():
    with pytest.raises(ValueError, match="third_tower="):
        presets.load(preset_path("digit"))


def _offline(*args, **kwargs):
    raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")


def test_offline_third_tower_download_names_the_preset_and_the_ways_out(monkeypatch):
    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", _offline)
    with pytest.raises(WeightsUnavailableError) as info:
        presets.load("3t_vitb16", weights=False, preprocessor=False)
    message = str(info.value)
    for expected in (
        "vit_base_patch16_224_imagenet21k",
        "Could not fetch",
        "third_tower=",
        "third_tower_weights=False",
    ):
        assert expected in message
    assert isinstance(info.value, OSError)


def test_offline_tokenizer_download_names_the_preset(monkeypatch):
    monkeypatch.setattr(keras_hub.tokenizers.Tokenizer, "from_preset", _offline)
    with pytest.raises(WeightsUnavailableError, match="bert_base_en_uncased.*preprocessor=False"):
        presets.load("clip_vitb16", weights=False)


# --- Swapping the pretrained tower, overrides ----------------------------------


def test_third_tower_accepts_a_folder_or_a_keras_model():
    thickness = keras_hub.models.Backbone.from_preset(preset_path("thickness"))
    model = presets.load("3t_tiny", weights=False, third_tower=preset_path("thickness"))
    for mine, theirs in zip(model.third_tower.backbone.weights, thickness.weights):
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs))
    model = presets.load("lit_tiny", weights=False, third_tower=thickness)
    assert model.image_tower.backbone is thickness and model.image_tower.frozen
    scenes = digit_scenes.make_scenes(4, "test", "clean", seed=0)
    assert tuple(model.encode_image(scenes["images"]).shape) == (4, 64)


def test_third_tower_cannot_replace_trained_weights_or_join_clip():
    with pytest.raises(ValueError, match="weights=False"):
        presets.load("3t_tiny", third_tower=preset_path("thickness"))
    with pytest.raises(ValueError, match="no third tower"):
        presets.load("clip_tiny", weights=False, third_tower=preset_path("thickness"))


def test_overrides_reach_the_model_and_the_towers():
    model = presets.load(
        "3t_tiny",
        weights=False,
        loss="sigmoid",
        pair_weights=(0.5, 0.25, 0.25),
        text_tower={"num_layers": 1},
    )
    assert model.loss_type == "sigmoid" and model.pair_weights == (0.5, 0.25, 0.25)
    assert model.text_tower.num_layers == 1
    # An override that changes a weight shape cannot take the trained weights.
    with pytest.raises(ValueError, match="disagree"):
        presets.load("3t_tiny", text_tower={"num_layers": 1})


if __name__ == "__main__":  # Writes REFERENCE; run on PyTorch.
    assert keras.backend.backend() == "torch"
    np.savez(REFERENCE, **_reference_embeddings(presets.load("3t_tiny")))
    print(f"wrote {REFERENCE}")


def test_a_keras_hub_preset_brings_its_image_converter_rescaled_for_unit_inputs(tmp_path):
    # A keras-hub classifier preset whose converter expects pixels in
    # [0, 255] (scale 1/255, then ImageNet-style offsets).
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(56, 56), scale=[1 / (255 * 0.2)] * 3, offset=[-0.5 / 0.2] * 3
    )
    classifier = keras_hub.models.ResNetImageClassifier(
        backbone=keras_hub.models.Backbone.from_preset(preset_path("digit")),
        num_classes=10,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter),
    )
    folder = str(tmp_path / "classifier")
    classifier.save_to_preset(folder)

    model = presets.load("3t_tiny", weights=False, third_tower=folder)
    assert isinstance(model.third_tower.image_converter, keras_hub.layers.ResNetImageConverter)
    images = np.random.default_rng(3).uniform(size=(2, 56, 56, 3)).astype("float32")
    expected = classifier.backbone(converter(images * 255.0))
    np.testing.assert_allclose(
        to_numpy(model.third_tower(images)["features"]),
        to_numpy(keras.ops.mean(expected, axis=(1, 2))),
        atol=1e-4,
    )
