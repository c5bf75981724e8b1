"""keras_3t.model.three_tower_presets: each preset builds with the parameter
counts its entry records."""

import keras_hub
import pytest

from keras_3t import presets
from tests.helpers import PAPER_PRESETS
from tests.helpers import TINY_PRESETS


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_tiny_presets_build_fresh_with_the_registered_counts(name):
    model = presets.load(name, weights=False)
    assert presets.parameter_counts(model) == presets.PRESETS[name]["parameter_count"]
    assert model.optimizer is not None  # compiled


# A paper-size preset's counts are its towers' shapes, the same on every
# backend; the tiny presets above build on every backend.
@pytest.mark.one_backend
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
@pytest.mark.parametrize("name", [name for name in PAPER_PRESETS if name != "3t_vitb16"])
def test_large_presets_build_offline_with_the_registered_counts(name):
    model = presets.load(name, weights=False, third_tower_weights=False, preprocessor=False)
    assert presets.parameter_counts(model) == presets.PRESETS[name]["parameter_count"]
