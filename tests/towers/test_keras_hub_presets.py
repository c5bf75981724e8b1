"""keras_3t.towers.keras_hub_presets: a preset's backbone and converter, offline errors."""

import keras_hub
import numpy as np
import pytest

from keras_3t import ThirdTower
from keras_3t import presets
from keras_3t.presets import WeightsUnavailableError
from keras_3t.towers.keras_hub_presets import load_backbone
from keras_3t.towers.keras_hub_presets import load_image_converter
from tests.helpers import IMAGE_SIZE
from tests.helpers import tiny_vit
from tests.helpers import to_numpy

# keras-hub's ViT ImageNet normalisation: [0, 255] → [-1, 1].
CONVERTER = dict(image_size=(IMAGE_SIZE, IMAGE_SIZE), scale=2 / 255, offset=-1.0)


@pytest.fixture(scope="module")
def vit_preset(tmp_path_factory):
    """A local keras-hub preset folder: a random ViT and its image converter."""
    folder = str(tmp_path_factory.mktemp("presets") / "vit")
    tiny_vit().save_to_preset(folder)
    keras_hub.layers.ViTImageConverter(**CONVERTER).save_to_preset(folder)
    return folder


def test_a_preset_folder_gives_its_backbone_and_its_converter_for_unit_range_images(vit_preset):
    backbone = load_backbone(vit_preset)
    assert type(backbone).__name__ == "ViTBackbone"
    converter = load_image_converter(vit_preset)
    pixels = np.random.default_rng(0).integers(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3))
    original = keras_hub.layers.ViTImageConverter(**CONVERTER)
    # The converter takes [0, 1] where the preset's took [0, 255]: same output.
    np.testing.assert_allclose(
        to_numpy(converter(pixels.astype("float32") / 255)),
        to_numpy(original(pixels.astype("float32"))),
        atol=1e-5,
    )


def test_third_tower_from_a_preset_folder_or_a_backbone(vit_preset):
    tower = ThirdTower.from_preset(vit_preset, embedding_dim=8)
    assert tower.image_converter is not None and tower.resolved_pooling == "token"
    images = np.random.default_rng(1).random((2, 40, 40, 3)).astype("float32")
    # The converter resizes: images of another size need no preprocessing.
    assert to_numpy(tower(images)["text_head"]).shape == (2, 8)
    fresh = ThirdTower.from_preset(vit_preset, embedding_dim=8, load_weights=False)
    assert not np.array_equal(
        to_numpy(fresh.backbone.weights[0]), to_numpy(tower.backbone.weights[0])
    )
    mine = ThirdTower.from_preset(tower.backbone, embedding_dim=8)
    assert mine.backbone is tower.backbone and mine.image_converter is None
    model = presets.load("3t_tiny", weights=False, third_tower=vit_preset, preprocessor=False)
    assert type(model.third_tower.backbone).__name__ == "ViTBackbone"
    assert model.third_tower.image_converter is not None


def test_a_preset_that_cannot_be_fetched_names_it_and_how_to_pass_a_folder():
    # A handle that does not exist: offline the fetch fails, online keras-hub
    # refuses it; either way nothing is downloaded.
    handle = "kaggle://keras-3t/no-such-model/keras/none/1"
    with pytest.raises(WeightsUnavailableError, match="no-such-model.*save_to_preset.*folder"):
        ThirdTower.from_preset(handle, embedding_dim=8)
    with pytest.raises(ValueError, match="neither a keras-hub preset name"):
        ThirdTower.from_preset("resnet_51_imagenet", embedding_dim=8)
    with pytest.raises(ValueError, match="not a keras-hub backbone preset folder"):
        ThirdTower.from_preset(presets.__file__.rsplit("/", 1)[0], embedding_dim=8)
