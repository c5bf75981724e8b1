"""keras_3t.data.third_tower_cache: cached third-tower features train like the
live tower, and the cache refuses what would make it wrong."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_3t import presets
from keras_3t.data import from_caption_file
from keras_3t.data import load_feature_shards
from keras_3t.data import load_third_tower_cache
from keras_3t.data import make_dataset
from keras_3t.data import write_third_tower_cache
from keras_3t.demo.toy import toy_batch
from tests.helpers import IMAGE_SIZE
from tests.helpers import digit_scene_source
from tests.helpers import tiny_model
from tests.helpers import tiny_vit
from tests.helpers import to_numpy
from tests.helpers import toy_preprocessor
from tests.helpers import two_frozen_towers

BATCH = 8


def _preset_model():
    model = presets.load("3t_tiny")
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def _image_size(model):
    return model.image_tower.image_shape[0]


def test_cached_third_tower_trains_like_the_live_one(tmp_path):
    _, examples = digit_scene_source(tmp_path)
    live, cached = _preset_model(), _preset_model()
    size = _image_size(live)
    cache_dir = str(tmp_path / "captions.csv.third_tower_cache")
    manifest = write_third_tower_cache(live, examples, cache_dir, size, batch_size=5)
    assert manifest["images"] == 16
    assert manifest["towers"]["third"]["feature_dim"] == live.third_tower.feature_dim
    cache = load_third_tower_cache(cache_dir, cached)

    def data(model, **kwargs):
        return make_dataset(
            examples, model.preprocessor, size, BATCH, seed=0, random_crop_scale=None, **kwargs
        )

    # Peeks use their own datasets: a dataset's later iterators shuffle on.
    live_batch = next(iter(data(live)))
    cached_batch = next(iter(data(cached, third_tower_cache=cache)))
    np.testing.assert_array_equal(live_batch["images"].numpy(), cached_batch["images"].numpy())
    features = to_numpy(live.third_tower.features(live_batch["images"].numpy()))
    np.testing.assert_allclose(cached_batch["third_features"].numpy(), features, atol=1e-5)

    initial = [to_numpy(w) for w in live.trainable_weights]
    live_history = live.fit(data(live), steps_per_epoch=3, verbose=0).history
    cached_history = cached.fit(
        data(cached, third_tower_cache=cache), steps_per_epoch=3, verbose=0
    ).history
    np.testing.assert_allclose(live_history["loss"], cached_history["loss"], rtol=1e-5)
    moved = 0.0
    for live_weight, cached_weight, start in zip(
        live.trainable_weights, cached.trainable_weights, initial
    ):
        np.testing.assert_allclose(
            to_numpy(cached_weight), to_numpy(live_weight), atol=1e-5, err_msg=live_weight.path
        )
        moved = max(moved, float(np.abs(to_numpy(live_weight) - start).max()))
    assert moved > 1e-3  # training moved the weights: the comparison can fail


def test_cache_refuses_augmentation_other_towers_and_changed_data(tmp_path):
    path, examples = digit_scene_source(tmp_path, 8)
    model = _preset_model()
    size = _image_size(model)
    cache_dir = str(tmp_path / "cache")
    write_third_tower_cache(model, examples, cache_dir, size)
    cache = load_third_tower_cache(cache_dir, model)

    with pytest.raises(ValueError, match="augments it"):
        make_dataset(examples, model.preprocessor, size, 4, third_tower_cache=cache)
    with pytest.raises(ValueError, match="augments it"):
        make_dataset(
            examples,
            model.preprocessor,
            size,
            4,
            random_crop_scale=None,
            flip=True,
            third_tower_cache=cache,
        )
    with pytest.raises(ValueError, match="computed on 56-pixel crops"):
        make_dataset(
            examples, model.preprocessor, 48, 4, random_crop_scale=None, third_tower_cache=cache
        )

    other = _preset_model()
    weight = other.third_tower.backbone.weights[0]
    weight.assign(weight + 0.01)
    with pytest.raises(ValueError, match="another third tower"):
        load_third_tower_cache(cache_dir, other)
    with pytest.raises(ValueError, match="for 3T models"):
        load_third_tower_cache(cache_dir, presets.load("clip_tiny"))

    # An image replaced under the same id, and an id the cache lacks.
    with open(os.path.join(tmp_path, "scene_1.png"), "rb") as file:
        replacement = file.read()
    with open(os.path.join(tmp_path, "scene_0.png"), "wb") as file:
        file.write(replacement)
    changed = from_caption_file(path, image_root=str(tmp_path))
    with pytest.raises(tf.errors.InvalidArgumentError, match="differs from the one cached"):
        list(
            make_dataset(
                changed, model.preprocessor, size, 4, training=False, third_tower_cache=cache
            )
        )
    extra = examples.map(lambda example: {**example, "image_id": example["image_id"] + 100})
    with pytest.raises(tf.errors.InvalidArgumentError, match="is not in the third-tower cache"):
        list(
            make_dataset(
                extra, model.preprocessor, size, 4, training=False, third_tower_cache=cache
            )
        )


def test_cache_is_never_overwritten_and_corruption_is_named(tmp_path):
    _, examples = digit_scene_source(tmp_path, 4)
    model = _preset_model()
    cache_dir = str(tmp_path / "cache")
    write_third_tower_cache(model, examples, cache_dir, 56)
    before = {
        name: open(os.path.join(cache_dir, name), "rb").read() for name in os.listdir(cache_dir)
    }
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_third_tower_cache(model, examples, cache_dir, 56)
    assert {
        name: open(os.path.join(cache_dir, name), "rb").read() for name in os.listdir(cache_dir)
    } == before
    # No staging folder left beside the cache.
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".third_tower_cache")]

    features = os.path.join(cache_dir, "features.npz")
    with open(features, "r+b") as file:
        file.truncate(os.path.getsize(features) // 2)
    with pytest.raises(ValueError, match="corrupt.*overwrite=True"):
        load_third_tower_cache(cache_dir, model)
    os.remove(features)
    with pytest.raises(FileNotFoundError, match="has no features.npz"):
        load_third_tower_cache(cache_dir, model)
    os.remove(os.path.join(cache_dir, "manifest.json"))
    with pytest.raises(FileNotFoundError, match="has no manifest.json: it is not a third-tower"):
        load_third_tower_cache(cache_dir, model)
    manifest = write_third_tower_cache(model, examples, cache_dir, 56, overwrite=True)
    assert (
        manifest["images"] == 4 and load_third_tower_cache(cache_dir, model).features.shape[0] == 4
    )


def test_cache_writer_reads_the_source_once(tmp_path):
    model = _preset_model()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 40, 40, 3), dtype="uint8")
    # Per-caption rows: image 1 has three captions, image 2 two.
    ids = [1, 2, 1, 3, 2, 1]
    passes = []

    def rows():
        passes.append(1)
        for image_id in ids:
            yield {"image": images[image_id - 1], "caption": "a caption", "image_id": image_id}

    examples = tf.data.Dataset.from_generator(
        rows,
        output_signature={
            "image": tf.TensorSpec((40, 40, 3), tf.uint8),
            "caption": tf.TensorSpec((), tf.string),
            "image_id": tf.TensorSpec((), tf.int64),
        },
    )
    cache_dir = str(tmp_path / "cache")
    manifest = write_third_tower_cache(model, examples, cache_dir, 56, batch_size=2)
    assert len(passes) == 1
    cache = load_third_tower_cache(cache_dir, model)
    assert manifest["images"] == 3 and list(cache.image_ids) == [1, 2, 3]
    # Each row is its own image's features, whatever the batching.
    alone = write_third_tower_cache(model, examples.take(1), str(tmp_path / "alone"), 56)
    assert alone["images"] == 1
    np.testing.assert_allclose(
        load_third_tower_cache(str(tmp_path / "alone"), model).features[0],
        cache.features[0],
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="got no examples"):
        write_third_tower_cache(model, examples.take(0), str(tmp_path / "empty"), 56)
    assert not os.path.exists(tmp_path / "empty")


def test_model_checks_cached_features():
    model = tiny_model("3t", third_backbone=tiny_vit())
    model.compile()
    batch = toy_batch(BATCH, image_size=IMAGE_SIZE, seed=0)
    with pytest.raises(ValueError, match=r"third_features must have shape \(batch, 32\)"):
        model.train_on_batch({**batch, "third_features": np.zeros((BATCH, 7), "float32")})
    with pytest.raises(ValueError, match="different batch sizes"):
        model.train_on_batch({**batch, "third_features": np.zeros((BATCH - 1, 32), "float32")})
    clip = tiny_model("clip")
    clip.compile()
    with pytest.raises(ValueError, match="uses no third tower"):
        clip.train_on_batch({**batch, "third_features": np.zeros((BATCH, 32), "float32")})


def test_the_cache_fits_a_reloaded_backbone_that_renames_its_layers(tmp_path):
    # DINOv2 names its sublayers after itself when built: the weights' paths
    # differ after a save and load, their shapes and values do not.
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=4,
        num_layers=1,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        position_embedding_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
    )
    model = tiny_model("3t", third_backbone=backbone)
    _, examples = digit_scene_source(tmp_path, 4)
    cache_dir = str(tmp_path / "cache")
    write_third_tower_cache(model, examples, cache_dir, IMAGE_SIZE)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    paths = {w.path for w in model.third_tower.weights}
    assert paths != {w.path for w in reloaded.third_tower.weights}
    assert load_third_tower_cache(cache_dir, reloaded).features.shape == (4, 16)


def test_a_cache_of_another_format_version_is_refused(tmp_path):
    _, examples = digit_scene_source(tmp_path, 4)
    model = tiny_model("3t", third_backbone=tiny_vit())
    cache_dir = str(tmp_path / "cache")
    write_third_tower_cache(model, examples, cache_dir, IMAGE_SIZE)
    manifest_path = os.path.join(cache_dir, "manifest.json")
    with open(manifest_path) as file:
        manifest = json.load(file)
    for version, word in ((2, "older"), (99, "newer")):
        with open(manifest_path, "w") as file:
            json.dump({**manifest, "format_version": version}, file)
        with pytest.raises(ValueError, match=f"format version {version}, {word}.*overwrite=True"):
            load_third_tower_cache(cache_dir, model)
    # The feature shards' format, another layout: each loader names the other.
    with open(manifest_path, "w") as file:
        json.dump(manifest, file)
    with pytest.raises(ValueError, match="holds a third-tower cache .* not feature shards"):
        load_feature_shards(cache_dir, model)
    with open(manifest_path, "w") as file:
        json.dump({**manifest, "layout": "shards"}, file)
    with pytest.raises(ValueError, match="holds feature shards .*load_feature_shards"):
        load_third_tower_cache(cache_dir, model)


def test_the_cache_holds_each_frozen_tower_and_trains_like_the_live_towers(tmp_path):
    _, examples = digit_scene_source(tmp_path, 8)
    live = tiny_model(third_towers=two_frozen_towers(), preprocessor=toy_preprocessor())
    cached = tiny_model(third_towers=two_frozen_towers())
    cached.set_weights(live.get_weights())
    cache_dir = str(tmp_path / "cache")
    manifest = write_third_tower_cache(live, examples, cache_dir, IMAGE_SIZE)
    assert sorted(manifest["towers"]) == ["digits", "thickness"]
    assert sorted(os.listdir(cache_dir)) == ["features.npz", "manifest.json"]
    with np.load(os.path.join(cache_dir, "features.npz")) as arrays:
        assert sorted(arrays.files) == [
            "features_digits",
            "features_thickness",
            "image_hashes",
            "image_ids",
        ]
    cache = load_third_tower_cache(cache_dir, cached)
    data = make_dataset(
        examples, live.preprocessor, IMAGE_SIZE, 4, random_crop_scale=None, third_tower_cache=cache
    )
    batches = [
        {k: keras.tree.map_structure(np.asarray, v) for k, v in b.items()} for b in data.take(2)
    ]
    for name, tower in live.third_towers.items():
        np.testing.assert_allclose(
            batches[0]["third_features"][name],
            to_numpy(tower.features(batches[0]["images"])),
            atol=1e-5,
        )
    # The same batches, the live model computing the features itself.
    for model in (live, cached):
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    for batch in batches:
        live.train_on_batch({k: v for k, v in batch.items() if k != "third_features"})
        cached.train_on_batch(batch)
    for live_weight, cached_weight in zip(live.trainable_weights, cached.trainable_weights):
        np.testing.assert_allclose(
            to_numpy(cached_weight), to_numpy(live_weight), atol=1e-5, err_msg=live_weight.path
        )
    # A one-tower model cannot read it, nor a two-tower one one tower's features.
    with pytest.raises(ValueError, match=r"frozen towers \['digits', 'thickness'\]"):
        load_third_tower_cache(cache_dir, tiny_model())
    with pytest.raises(ValueError, match=r"dict with one entry per frozen tower"):
        live.train_on_batch(
            {**batches[0], "third_features": batches[0]["third_features"]["digits"]}
        )
