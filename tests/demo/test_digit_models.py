"""keras_3t.demo.digit_models: the shipped pretrained digit classifiers."""

import json
import os

import keras_hub
import numpy as np
import pytest

from keras_3t.demo.digit_models import THIRD_TOWER_TASKS
from keras_3t.demo.digit_models import build_digit_model
from keras_3t.demo.digit_models import held_out_accuracy
from keras_3t.demo.digit_models import load_third_tower_backbone
from keras_3t.demo.digit_models import preset_path
from tests.helpers import to_numpy


@pytest.mark.parametrize("which", sorted(THIRD_TOWER_TASKS))
def test_shipped_third_tower_loads_offline_and_reproduces_its_accuracy(which):
    path = preset_path(THIRD_TOWER_TASKS[which])
    with open(os.path.join(path, "metadata.json")) as file:
        metadata = json.load(file)
    backbone = load_third_tower_backbone(which)
    assert isinstance(backbone, keras_hub.models.ResNetBackbone)
    features = to_numpy(backbone(np.zeros((1, 56, 56, 3), "float32")))
    assert features.shape == (1, 7, 7, 128)
    classifier = keras_hub.models.ImageClassifier.from_preset(path)
    accuracy = held_out_accuracy(classifier, THIRD_TOWER_TASKS[which])
    # Recorded on one backend; another may flip a few predictions of the 500.
    assert accuracy == pytest.approx(metadata["held_out_accuracy"], abs=0.012)
    chance = 1 / len(metadata["class_names"])
    assert accuracy > chance + 0.2


def test_missing_third_tower_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain_third_tower.py"):
        load_third_tower_backbone("matched", directory=str(tmp_path))
    with pytest.raises(ValueError, match="which must be one of"):
        load_third_tower_backbone("places365")


def test_digit_models_freeze_the_pretrained_backbone():
    backbone = load_third_tower_backbone("matched")
    lit = build_digit_model("lit", backbone)
    assert not lit.image_tower.backbone.trainable
    three = build_digit_model("3t", load_third_tower_backbone("matched"))
    assert not three.third_tower.backbone.trainable
    assert three.image_tower.backbone.trainable
    with pytest.raises(ValueError, match="needs a pretrained third_backbone"):
        build_digit_model("3t")
