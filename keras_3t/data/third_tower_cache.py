"""A cache of the frozen third tower's features, one row per image.

The third tower's backbone never trains, so with deterministic preprocessing
(resize and central crop, no random crop or flip) its pooled features e(x)
are the same at every step: compute them once, store them next to the data,
and 3T trains at the cost of CLIP plus the two linear heads (which do train,
so they run on the cached features at every step).

A cache is the small-data case of the feature shards' format
(`keras_3t.data.feature_shards`): a features folder with the same
`manifest.json` and one `.npz` for all images, keyed by `image_id` instead
of a data shard's keys, and held in memory so that any source (caption
files, TFRecords, TFDS) can look its images up. Layout:
- `manifest.json`: the format version, the layout (`"cache"`), the crop
  size, the image count, and per frozen tower its layer name, fingerprint
  (see `third_tower_fingerprint`), feature size and array name;
- `features.npz`: `image_ids` (int64, the `image_id` of each row),
  `image_hashes` (int64, a fingerprint of each image's stored bytes,
  checked as the data are read, so a changed data set, with ids reused for
  other images, is refused instead of training on wrong features) and
  `features` (float32 `(images, feature_dim)`), or `features_<name>` per
  tower for a model with several frozen towers (`third_towers`).
"""

import hashlib
import json
import os
import zipfile

import numpy as np

from keras_3t.atomic_files import check_replaceable
from keras_3t.atomic_files import staged_folder
from keras_3t.data.decoding import decode_image
from keras_3t.image_converter import resize_and_center_crop

MANIFEST = "manifest.json"
CACHE_FILE = "features.npz"
# Of both layouts of a features folder: 3 is the first with feature shards.
FORMAT_VERSION = 3
LAYOUTS = {
    "cache": "a third-tower cache (load it with load_third_tower_cache)",
    "shards": "feature shards (load them with load_feature_shards)",
}
PREPROCESSING = "decode to float [0, 1] RGB, resize the shorter side, central crop"
# tf.strings.to_hash_bucket_fast needs a bucket count; 2**62 keeps int64s.
HASH_BUCKETS = 2**62


def third_tower_fingerprint(third_tower):
    """A SHA-256 of what defines the cached features.

    The backbone's class, what is pooled and how (`resolved_pooling`,
    `stage`), and the shape and values of each
    frozen weight (backbone, converter) in the tower's order. Not the
    weights' paths: some keras-hub backbones (DINOv2, for one) name or
    number their sublayers when built, so the paths of a saved model change
    when it is loaded again. The heads are
    excluded: they train, and read the cached features.
    """
    digest = hashlib.sha256()
    backbone = type(third_tower.backbone).__name__
    digest.update(f"{backbone} {third_tower.resolved_pooling} {third_tower.stage}".encode())
    for weight in third_tower.weights:
        if weight.trainable:
            continue
        value = np.ascontiguousarray(np.asarray(weight.numpy(), "float32"))
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def image_hash(image):
    """An int64 fingerprint of one example's stored image (bytes or array)."""
    import tensorflow as tf

    if image.dtype != tf.string:
        image = tf.io.serialize_tensor(image)
    return tf.strings.to_hash_bucket_fast(image, HASH_BUCKETS)


def write_third_tower_cache(model, examples, cache_dir, image_size, batch_size=64, overwrite=False):
    """Computes the third tower's features once per image and stores them.

    Each distinct `image_id` of `examples` is decoded, resized and centrally
    cropped to `image_size` (the preprocessing `make_dataset` applies with
    `random_crop_scale=None`) and embedded by `model.third_tower`'s frozen
    backbone. The folder is written beside `cache_dir` and renamed into
    place, so an interrupted run leaves no partial cache.

    Args:
        model: a `ThreeTowerModel` with objective `"3t"`.
        examples: a source dataset (`from_caption_file`, `from_tfds`,
            `from_tfrecords`); per-caption sources repeat images, which are
            embedded once.
        cache_dir: the folder to write, e.g. next to the data
            (`"captions.csv.third_tower_cache"`).
        image_size: int, the side of the square crops the model trains on.
        batch_size: images embedded per batch.
        overwrite: bool. Replace an existing cache; otherwise an existing
            non-empty folder is a `FileExistsError`.

    Returns:
        The manifest (a dict).

    Example:
    >>> import numpy as np, tempfile, os, tensorflow as tf
    >>> from keras_3t.data import write_third_tower_cache, load_third_tower_cache
    >>> from keras_3t.presets import load
    >>> model = load("3t_tiny")
    >>> examples = tf.data.Dataset.from_tensor_slices({
    ...     "image": np.zeros((4, 40, 40, 3), "uint8"),
    ...     "caption": ["one", "two", "three", "four"], "image_id": [0, 0, 1, 2]})
    >>> cache_dir = os.path.join(tempfile.mkdtemp(), "third_tower_cache")
    >>> write_third_tower_cache(model, examples, cache_dir, image_size=56)["images"]
    3
    >>> load_third_tower_cache(cache_dir, model).features.shape[0]
    3
    """
    import keras
    import tensorflow as tf

    check_three_towers(model)
    cache_dir = os.path.abspath(cache_dir)
    check_replaceable(cache_dir, overwrite)
    seen = tf.lookup.experimental.MutableHashTable(tf.int64, tf.int64, default_value=0)

    def first_occurrence(example):
        # Per-caption sources repeat an image: embed it once, in one pass
        # over the source. tf.data runs a filter sequentially, so "first"
        # follows the source's order.
        image_id = tf.cast(example["image_id"], tf.int64)
        new = tf.equal(seen.lookup(image_id), 0)
        with tf.control_dependencies([seen.insert(image_id, tf.constant(1, tf.int64))]):
            return tf.identity(new)

    def load(example):
        image = decode_image(example["image"], example["image_id"], "raise")
        return {
            "images": resize_and_center_crop(image, (image_size, image_size)),
            "image_id": example["image_id"],
            "image_hash": image_hash(example["image"]),
        }

    unique = (
        examples.filter(first_occurrence)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    inputs = keras.Input((image_size, image_size, 3))
    towers = model.third_towers
    extractor = keras.Model(
        inputs, {name: tower.features(inputs) for name, tower in towers.items()}
    )
    features = {name: [] for name in towers}
    image_ids, hashes = [], []
    for batch in unique.as_numpy_iterator():
        for name, values in extractor.predict_on_batch(batch["images"]).items():
            features[name].append(np.asarray(values, "float32"))
        image_ids.append(batch["image_id"])
        hashes.append(batch["image_hash"])
    if not image_ids:
        raise ValueError("write_third_tower_cache got no examples.")
    arrays = {
        array: np.concatenate(features[name]) for name, array in feature_array_names(model).items()
    }
    arrays["image_ids"] = np.concatenate(image_ids).astype("int64")
    arrays["image_hashes"] = np.concatenate(hashes).astype("int64")
    manifest = features_manifest(model, image_size, "cache", images=len(arrays["image_ids"]))
    with staged_folder(cache_dir, ".third_tower_cache.") as staging:
        np.savez(os.path.join(staging, CACHE_FILE), **arrays)
        with open(os.path.join(staging, MANIFEST), "w") as file:
            json.dump(manifest, file, indent=1)
    return manifest


def feature_array_names(model):
    """The name of each frozen tower's features array: one tower's is `features`."""
    if model.third_tower is not None:
        return {name: "features" for name in model.third_towers}
    return {name: f"features_{name}" for name in model.third_towers}


def features_manifest(model, image_size, layout, **fields):
    """The `manifest.json` of a features folder of `model`'s frozen towers."""
    arrays = feature_array_names(model)
    return {
        "format_version": FORMAT_VERSION,
        "layout": layout,
        "image_size": int(image_size),
        "towers": {
            name: {
                "layer": tower.name,
                "fingerprint": third_tower_fingerprint(tower),
                "feature_dim": int(tower.feature_dim),
                "array": arrays[name],
            }
            for name, tower in model.third_towers.items()
        },
        "preprocessing": PREPROCESSING,
        **fields,
    }


def read_features_manifest(folder, model, layout, what, write_again):
    """A features folder's manifest, checked against `model` and `layout`.

    Args:
        folder: the features folder.
        model: the `ThreeTowerModel` that will read the features.
        layout: `"cache"` or `"shards"`, what the caller reads.
        what: the folder as errors name it (`"The third-tower cache c/"`).
        write_again: how to write it, as errors say it.

    Raises:
        FileNotFoundError: no manifest. ValueError: an unreadable manifest,
        another format version or layout, or other frozen towers.
    """
    check_three_towers(model)
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{what} has no {MANIFEST}: it is not {LAYOUTS[layout]}, or its writing "
            f"did not finish. {write_again}"
        )
    try:
        with open(path) as file:
            manifest = json.load(file)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is corrupt ({error}). {write_again}") from None
    version = manifest.get("format_version", 0)
    if version != FORMAT_VERSION:
        newer_or_older = "newer" if version > FORMAT_VERSION else "older"
        raise ValueError(
            f"{what} has format version {version}, {newer_or_older} than this keras-3t "
            f"reads ({FORMAT_VERSION}). {write_again} Or use the keras-3t that wrote it."
        )
    found = manifest.get("layout")
    if found != layout:
        holds = LAYOUTS.get(found, f"an unknown layout {found!r}")
        raise ValueError(f"{what} holds {holds}, not {LAYOUTS[layout]}.")
    towers = manifest["towers"]
    check_cached_towers(
        what,
        {name: (tower["fingerprint"], tower["feature_dim"]) for name, tower in towers.items()},
        model,
    )
    return manifest


class ThirdTowerCache:
    """Cached third-tower features, checked against a model; see `load_third_tower_cache`.

    Attributes:
        features: float32 `(images, feature_dim)`; for a model with several
            frozen towers, a dict of them by tower name.
        image_ids: int64 `(images,)`.
        image_hashes: int64 `(images,)`.
        image_size: the side of the crops the features were computed on.
        path: the cache folder.
    """

    def __init__(self, features, image_ids, image_hashes, image_size, path):
        import tensorflow as tf

        self.features = features
        self.image_ids = image_ids
        self.image_hashes = image_hashes
        self.image_size = image_size
        self.path = path
        # Made eagerly, so that every tf.data pipeline can capture them.
        self._rows = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(image_ids, tf.int64),
                tf.range(len(image_ids), dtype=tf.int64),
            ),
            default_value=-1,
        )
        self._features = tf.nest.map_structure(tf.constant, features)
        self._hashes = tf.constant(image_hashes, tf.int64)

    def features_of(self, example):
        """The cached features of one example (inside `tf.data`); see `lookup`."""
        return self.lookup(example["image_id"], example["image"])

    def lookup(self, image_id, image):
        """The cached features of one example (inside `tf.data`).

        Raises (as the data are read) if the id is not cached or its image
        differs from the one cached.
        """
        import tensorflow as tf

        row = self._rows.lookup(tf.cast(image_id, tf.int64))
        found = tf.debugging.Assert(
            row >= 0,
            [
                "image_id",
                image_id,
                f"is not in the third-tower cache {self.path}:",
                "write the cache again for this data (write_third_tower_cache).",
            ],
        )
        with tf.control_dependencies([found]):
            row = tf.maximum(row, 0)
        same = tf.debugging.Assert(
            tf.equal(self._hashes[row], image_hash(image)),
            [
                "The image of image_id",
                image_id,
                "differs from the one cached in",
                self.path,
                "- the data changed since the cache was written:",
                "write it again (write_third_tower_cache(..., overwrite=True)).",
            ],
        )
        with tf.control_dependencies([same]):
            return tf.nest.map_structure(lambda table: tf.gather(table, row), self._features)


def load_third_tower_cache(cache_dir, model):
    """Reads a cache written by `write_third_tower_cache` for `model`.

    Args:
        cache_dir: the cache folder.
        model: the `ThreeTowerModel` that will train on it; its third tower
            must be the one that wrote the cache (same frozen weights).

    Returns:
        A `ThirdTowerCache`, for `make_dataset(..., third_tower_cache=...)`.
    """
    what = f"The third-tower cache {cache_dir}"
    write_again = "Write it again with write_third_tower_cache(..., overwrite=True)."
    manifest = read_features_manifest(cache_dir, model, "cache", what, write_again)
    if not os.path.exists(os.path.join(cache_dir, CACHE_FILE)):
        raise FileNotFoundError(f"{what} has no {CACHE_FILE}. {write_again}")
    try:
        with np.load(os.path.join(cache_dir, CACHE_FILE), allow_pickle=False) as file:
            arrays = {name: file[name] for name in file.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{what} is corrupt ({type(error).__name__}: {error}). {write_again}"
        ) from None
    rows = manifest.get("images")
    expected = {"image_ids": (rows,), "image_hashes": (rows,)}
    for tower in manifest["towers"].values():
        expected[tower["array"]] = (rows, tower["feature_dim"])
    shapes = {name: arrays[name].shape if name in arrays else None for name in expected}
    if shapes != expected:
        raise ValueError(
            f"{what} is corrupt: its manifest says {CACHE_FILE} holds arrays of shapes "
            f"{expected}, and it holds {shapes}. {write_again}"
        )
    features = {name: arrays[tower["array"]] for name, tower in manifest["towers"].items()}
    if model.third_tower is not None:
        features = features[next(iter(features))]
    return ThirdTowerCache(
        features, arrays["image_ids"], arrays["image_hashes"], manifest["image_size"], cache_dir
    )


def check_cached_towers(what, cached, model):
    """Refuses features written by other frozen towers than `model`'s.

    Args:
        what: the cache or folder, as the errors name it
            (`"The third-tower cache runs/cache"`).
        cached: `{tower name: (fingerprint, feature_dim)}` as written.
        model: the `ThreeTowerModel` that will read the features.
    """
    if set(cached) != set(model.third_towers):
        raise ValueError(
            f"{what} holds the features of the frozen towers {sorted(cached)}; this "
            f"model's are {sorted(model.third_towers)}. Write them with this model."
        )
    for name, tower in model.third_towers.items():
        fingerprint, feature_dim = cached[name]
        if feature_dim != tower.feature_dim:
            raise ValueError(
                f"{what} holds {feature_dim}-dim features for {name!r}; this model's "
                f"tower gives {tower.feature_dim}."
            )
        if fingerprint != third_tower_fingerprint(tower):
            raise ValueError(
                f"{what} was written with another third tower {name!r} (its frozen "
                "weights differ from this model's): its features would be wrong for "
                "this model. Write them with this model."
            )


def check_three_towers(model):
    if getattr(model, "objective", None) != "3t":
        raise ValueError(
            "A third-tower cache is for 3T models; this model's objective is "
            f"{getattr(model, 'objective', None)!r}."
        )
