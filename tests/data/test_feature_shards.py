"""keras_3t.data.feature_shards: the frozen towers' features as shards beside
img2dataset's data shards train like the live towers, resume, split over
workers, and refuse what would make them wrong."""

import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_3t import data
from keras_3t import presets
from keras_3t.data import feature_shards
from tests.helpers import IMAGE_SIZE
from tests.helpers import ROOT
from tests.helpers import tiny_model
from tests.helpers import to_numpy
from tests.helpers import toy_preprocessor
from tests.helpers import train_recipe_briefly
from tests.helpers import two_frozen_towers


def preset_model():
    model = presets.load("3t_tiny")
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


@pytest.fixture(scope="module")
def written(img2dataset_outputs, tmp_path_factory):
    """The webdataset shards, and their feature shards written by the 3t_tiny preset."""
    shards = img2dataset_outputs["webdataset"]
    folder = str(tmp_path_factory.mktemp("features"))
    done = data.write_feature_shards(preset_model(), shards, folder, 56, batch_size=3)
    return shards, folder, done


def batches(model, shards, features=None, batch_size=4):
    examples = data.from_img2dataset(shards, third_tower_features=features)
    return data.make_dataset(
        examples,
        model.preprocessor,
        56,
        batch_size,
        seed=0,
        random_crop_scale=None,
        third_tower_cache=features,
    )


def test_feature_shards_train_like_the_live_third_tower(written):
    shards, folder, done = written
    assert sorted(os.listdir(folder)) == [f"{i:05d}.tar.npz" for i in range(4)] + ["manifest.json"]
    assert [os.path.basename(p) for p in done["written"]] == sorted(os.listdir(folder))[:4]
    live, cached = preset_model(), preset_model()
    features = data.load_feature_shards(folder, cached)
    live_batch = next(iter(batches(live, shards)))
    cached_batch = next(iter(batches(cached, shards, features)))
    np.testing.assert_array_equal(live_batch["images"].numpy(), cached_batch["images"].numpy())
    expected = to_numpy(live.third_tower.features(live_batch["images"].numpy()))
    np.testing.assert_allclose(cached_batch["third_features"].numpy(), expected, atol=1e-5)

    live_history = live.fit(batches(live, shards), steps_per_epoch=3, verbose=0).history
    cached_history = cached.fit(
        batches(cached, shards, features), steps_per_epoch=3, verbose=0
    ).history
    np.testing.assert_allclose(live_history["loss"], cached_history["loss"], rtol=1e-5)
    for live_weight, cached_weight in zip(live.trainable_weights, cached.trainable_weights):
        np.testing.assert_allclose(
            to_numpy(cached_weight), to_numpy(live_weight), atol=1e-5, err_msg=live_weight.path
        )


def test_each_tower_of_several_has_its_array(img2dataset_outputs, tmp_path):
    shards = img2dataset_outputs["parquet"]
    live = tiny_model(third_towers=two_frozen_towers(), preprocessor=toy_preprocessor())
    cached = tiny_model(third_towers=two_frozen_towers())
    cached.set_weights(live.get_weights())
    folder = str(tmp_path / "features")
    data.write_feature_shards(live, shards, folder, IMAGE_SIZE)
    with np.load(os.path.join(folder, "00000.parquet.npz")) as shard:
        assert sorted(shard.files) == [
            "features_digits",
            "features_thickness",
            "image_hashes",
            "keys",
        ]
    features = data.load_feature_shards(folder, cached)
    examples = data.from_img2dataset(shards, third_tower_features=features)
    batch = next(
        iter(
            data.make_dataset(
                examples,
                live.preprocessor,
                IMAGE_SIZE,
                4,
                training=False,
                third_tower_cache=features,
            )
        )
    )
    batch = {k: keras.tree.map_structure(np.asarray, v) for k, v in batch.items()}
    for name, tower in live.third_towers.items():
        np.testing.assert_allclose(
            batch["third_features"][name], to_numpy(tower.features(batch["images"])), atol=1e-5
        )
    with pytest.raises(ValueError, match="frozen towers"):
        data.load_feature_shards(folder, tiny_model())


def test_workers_split_the_shards_and_a_second_run_skips_what_is_done(written, tmp_path):
    shards, folder, _ = written
    model = preset_model()
    split = str(tmp_path / "split")
    first = data.write_feature_shards(model, shards, split, 56, worker=0, workers=3)
    second = data.write_feature_shards(model, shards, split, 56, worker=1, workers=3)
    assert [os.path.basename(p) for p in first["written"]] == ["00000.tar.npz", "00003.tar.npz"]
    assert [os.path.basename(p) for p in second["written"]] == ["00001.tar.npz"]
    again = data.write_feature_shards(model, shards, split, 56)
    assert [os.path.basename(p) for p in again["written"]] == ["00002.tar.npz"]
    assert len(again["skipped"]) == 3
    for name in os.listdir(folder):
        if name.endswith(".npz"):
            with np.load(os.path.join(folder, name)) as a, np.load(os.path.join(split, name)) as b:
                np.testing.assert_array_equal(a["keys"], b["keys"])
                np.testing.assert_array_equal(a["image_hashes"], b["image_hashes"])
                # Other batch sizes: the same features up to float rounding.
                np.testing.assert_allclose(a["features"], b["features"], atol=1e-5)


# Whole shards and resuming are the writer's file handling, the same on every backend.
@pytest.mark.one_backend
def test_a_killed_writer_leaves_whole_shards_and_resumes(written, tmp_path):
    shards, folder, _ = written
    # Many small shards, so that the kill lands between two of them.
    many = tmp_path / "many"
    many.mkdir()
    for i in range(24):
        shutil.copy(os.path.join(shards, f"{i % 4:05d}.tar"), many / f"{i:05d}.tar")
    features = str(tmp_path / "features")
    command = [
        sys.executable,
        os.path.join(ROOT, "recipes", "feature_shards.py"),
        "--data",
        str(many),
        "--output",
        features,
        "--batch-size",
        "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.isdir(features) and any(n.endswith(".npz") for n in os.listdir(features)):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = [n for n in os.listdir(features) if n.endswith(".npz")]
    assert 0 < len(done) < 24, "the kill should land while shards are being written"
    # Only whole shards are left (a partial one is a hidden temporary file).
    for name in done:
        with np.load(os.path.join(features, name)) as shard:
            assert len(shard["keys"]) == len(shard["features"]) > 0
    subprocess.run(command, check=True, capture_output=True)
    assert len([n for n in os.listdir(features) if n.endswith(".npz")]) == 24
    for i in range(24):
        name = f"{i:05d}.tar.npz"
        with np.load(os.path.join(features, name)) as resumed:
            with np.load(os.path.join(folder, f"{i % 4:05d}.tar.npz")) as whole:
                np.testing.assert_array_equal(resumed["keys"], whole["keys"])
                np.testing.assert_allclose(resumed["features"], whole["features"], atol=1e-5)


def test_missing_stale_and_mismatched_feature_shards_are_named(written, tmp_path):
    shards, folder, _ = written
    model = preset_model()
    copy = str(tmp_path / "features")
    shutil.copytree(folder, copy)
    features = data.load_feature_shards(copy, model)

    os.remove(os.path.join(copy, "00002.tar.npz"))
    with pytest.raises(FileNotFoundError, match=r"00002.tar \(expected .*00002.tar.npz\)"):
        data.from_img2dataset(shards, third_tower_features=features)

    # Shard 0's features filed as shard 2's: its keys are not shard 2's.
    shutil.copy(os.path.join(copy, "00000.tar.npz"), os.path.join(copy, "00002.tar.npz"))
    source = data.from_img2dataset(os.path.join(shards, "00002.tar"), third_tower_features=features)
    with pytest.raises(Exception, match="00002.tar.npz was written for other data: its row 0"):
        list(source.as_numpy_iterator())

    with open(os.path.join(copy, "00001.tar.npz"), "wb") as file:
        file.write(b"not a feature shard")
    source = data.from_img2dataset(os.path.join(shards, "00001.tar"), third_tower_features=features)
    with pytest.raises(Exception, match="00001.tar.npz is corrupt"):
        list(source.as_numpy_iterator())

    # Another third tower: the fingerprint differs.
    other = preset_model()
    other.third_tower.backbone.set_weights(
        [w + 1.0 for w in other.third_tower.backbone.get_weights()]
    )
    with pytest.raises(ValueError, match="another third tower"):
        data.load_feature_shards(folder, other)
    with pytest.raises(feature_shards.FeatureShardError, match="other frozen towers"):
        data.write_feature_shards(other, shards, copy, 56)
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        data.load_feature_shards(str(tmp_path), model)


def test_make_dataset_needs_the_feature_shards_and_deterministic_crops(written):
    shards, folder, _ = written
    model = preset_model()
    features = data.load_feature_shards(folder, model)
    examples = data.from_img2dataset(shards, third_tower_features=features)
    with pytest.raises(ValueError, match="pass the same FeatureShards"):
        data.make_dataset(examples, model.preprocessor, 56, 4, random_crop_scale=None)
    with pytest.raises(ValueError, match="central crop"):
        data.make_dataset(examples, model.preprocessor, 56, 4, third_tower_cache=features)
    with pytest.raises(ValueError, match="56-pixel crops; this pipeline makes 48"):
        data.make_dataset(
            examples, model.preprocessor, 48, 4, random_crop_scale=None, third_tower_cache=features
        )
    with pytest.raises(ValueError, match="carry no third_features"):
        data.make_dataset(
            data.from_img2dataset(shards),
            model.preprocessor,
            56,
            4,
            random_crop_scale=None,
            third_tower_cache=features,
        )


# The recipe's flag: fit on feature shards runs on every backend in
# test_feature_shards_train_like_the_live_third_tower.
@pytest.mark.one_backend
def test_the_train_recipe_reads_feature_shards(written, tmp_path):
    shards, folder, _ = written
    _, history = train_recipe_briefly(shards, tmp_path / "run", "--third-tower-features", folder)
    assert np.isfinite(history["loss"]).all()
