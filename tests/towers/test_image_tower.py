"""keras_3t.towers.image_tower: the image tower with and without a projection."""

import keras
import numpy as np

from keras_3t import ImageTower
from keras_3t.demo.toy import toy_batch
from tests.helpers import IMAGE_SIZE
from tests.helpers import run_round_trip_test
from tests.helpers import tiny_resnet
from tests.helpers import tiny_vit
from tests.helpers import to_numpy


def test_image_tower_with_converter_accepts_other_sizes():
    tower = ImageTower(
        tiny_vit(),
        embedding_dim=8,
        image_converter=keras.layers.Resizing(IMAGE_SIZE, IMAGE_SIZE),
    )
    out = tower(np.zeros((2, 32, 32, 3), "float32"))
    assert out["embedding"].shape == (2, 8)


def test_lit_image_tower_without_projection_returns_pooled_features():
    tower = ImageTower(tiny_resnet(), embedding_dim=None, frozen=True)
    out = tower(toy_batch(2, seed=0)["images"])
    assert tower.output_dim == 64
    np.testing.assert_array_equal(to_numpy(out["embedding"]), to_numpy(out["pooled"]))
    assert not tower.trainable_variables


def test_image_tower_round_trips(tmp_path):
    tower = ImageTower(tiny_vit(), embedding_dim=8)
    run_round_trip_test(tower, toy_batch(2, seed=0)["images"], tmp_path)
