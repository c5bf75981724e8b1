import keras
import numpy as np
import pytest
from conftest import IMAGE_SIZE
from conftest import snapshot
from conftest import text_of
from conftest import tiny_resnet
from conftest import tiny_text_tower
from conftest import tiny_vit
from conftest import to_numpy

from keras_3t import ImageTower
from keras_3t import TextTower
from keras_3t import ThirdTower
from keras_3t.demo.toy import toy_batch
from keras_3t.towers.pooling import pool_image_features
from keras_3t.towers.pooling import pool_text_features


def test_image_pooling_modes():
    tokens = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4)
    np.testing.assert_array_equal(to_numpy(pool_image_features(tokens, "token")), tokens[:, 0])
    np.testing.assert_allclose(to_numpy(pool_image_features(tokens, "auto")), tokens[:, 0])
    grid = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(pool_image_features(grid, "auto")), grid.mean(axis=(1, 2)), rtol=1e-6
    )
    with pytest.raises(ValueError, match="pooling='token'"):
        pool_image_features(grid, "token")
    with pytest.raises(ValueError, match="Unknown image pooling"):
        pool_image_features(grid, "max")


def test_text_pooling_reads_only_real_tokens():
    features = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=bool)
    np.testing.assert_allclose(
        to_numpy(pool_text_features(features, mask, "last")),
        [features[0, 1], features[1, 3]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        to_numpy(pool_text_features(features, mask, "mean")),
        [features[0, :2].mean(0), features[1].mean(0)],
        rtol=1e-5,
    )
    np.testing.assert_array_equal(
        to_numpy(pool_text_features(features, mask, "first")), features[:, 0]
    )


@pytest.mark.parametrize("pooling", ["mean", "last", "first"])
def test_text_tower_ignores_padding_tokens(pooling):
    tower = tiny_text_tower(pooling=pooling)
    batch = text_of(toy_batch(3, seed=0))
    changed = dict(batch, token_ids=np.where(batch["padding_mask"], batch["token_ids"], 7))
    np.testing.assert_allclose(
        to_numpy(tower(batch)["embedding"]), to_numpy(tower(changed)["embedding"]), atol=1e-5
    )


def test_text_tower_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="Unknown text pooling"):
        tiny_text_tower(pooling="max")


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


@pytest.mark.parametrize(
    "make",
    [
        lambda: ImageTower(tiny_vit(), embedding_dim=8),
        lambda: ThirdTower(tiny_resnet(), embedding_dim=8, shared_head=True),
        lambda: tiny_text_tower(pooling="last"),
    ],
    ids=["image", "third", "text"],
)
def test_towers_round_trip_through_their_config(make):
    tower = make()
    batch = toy_batch(2, seed=0)
    inputs = text_of(batch) if isinstance(tower, TextTower) else batch["images"]
    expected = tower(inputs)["embedding" if "embedding" in tower(inputs) else "text_head"]
    clone = tower.__class__.from_config(tower.get_config())
    clone.build()
    clone.set_weights(tower.get_weights())
    key = "embedding" if "embedding" in clone(inputs) else "text_head"
    np.testing.assert_allclose(to_numpy(clone(inputs)[key]), to_numpy(expected), atol=1e-6)
    assert clone.get_config() == tower.get_config()


def test_frozen_backbone_restored_from_config_stays_frozen():
    tower = ThirdTower(tiny_resnet(), embedding_dim=8)
    clone = ThirdTower.from_config(tower.get_config())
    assert not clone.backbone.trainable_variables
    assert all(not v.trainable for v in clone.backbone.variables)
    clone.build()
    assert len(clone.trainable_variables) == 2
