"""keras_3t.towers.third_tower: frozen, in inference mode, without gradient."""

import numpy as np

from keras_3t import ThirdTower
from keras_3t.demo.toy import toy_batch
from tests.helpers import run_round_trip_test
from tests.helpers import snapshot
from tests.helpers import tiny_resnet
from tests.helpers import to_numpy


def test_third_tower_is_frozen_in_inference_mode_and_passes_no_gradient():
    backbone = tiny_resnet()
    tower = ThirdTower(backbone, embedding_dim=8)
    tower.build()
    assert not backbone.trainable
    assert {v.path for v in tower.trainable_variables} == {
        v.path for v in tower.image_head.trainable_variables + tower.text_head.trainable_variables
    }
    before = snapshot(backbone.variables)
    images = toy_batch(4, seed=1)["images"]
    # Even with training=True, batch norm keeps its moving statistics.
    out = tower(images, training=True)
    assert out["features"].shape == (4, 64)
    after = snapshot(backbone.variables)
    for path in before:
        np.testing.assert_array_equal(before[path], after[path])


def test_third_tower_shared_head():
    tower = ThirdTower(tiny_resnet(), embedding_dim=8, shared_head=True)
    out = tower(toy_batch(2, seed=0)["images"])
    np.testing.assert_array_equal(to_numpy(out["image_head"]), to_numpy(out["text_head"]))
    assert len(tower.trainable_variables) == 1


def test_third_tower_round_trips_and_stays_frozen(tmp_path):
    tower = ThirdTower(tiny_resnet(), embedding_dim=8, shared_head=True)
    from_file, _ = run_round_trip_test(tower, toy_batch(2, seed=0)["images"], tmp_path)
    assert not from_file.backbone.trainable_variables
