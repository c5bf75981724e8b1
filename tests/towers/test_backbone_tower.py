"""keras_3t.towers.backbone_tower: what every tower shares, such as a frozen
backbone that stays frozen."""

from keras_3t import ThirdTower
from tests.helpers import tiny_resnet


def test_frozen_backbone_restored_from_config_stays_frozen():
    tower = ThirdTower(tiny_resnet(), embedding_dim=8)
    clone = ThirdTower.from_config(tower.get_config())
    assert not clone.backbone.trainable_variables
    assert all(not v.trainable for v in clone.backbone.variables)
    clone.build()
    assert len(clone.trainable_variables) == 2
