"""keras_3t.saving.preset_loader: third towers and tokenizers from presets,
overrides, and clear errors offline."""

import keras
import keras_hub
import numpy as np
import pytest
import requests

from keras_3t import presets
from keras_3t.demo import digit_scenes
from keras_3t.demo.digit_models import preset_path
from keras_3t.presets import WeightsUnavailableError
from tests.helpers import to_numpy


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
