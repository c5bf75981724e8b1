"""A cache of the frozen third tower's features, one row per image.

The third tower's backbone never trains, so with deterministic preprocessing
(resize and central crop, no random crop or flip) its pooled features e(x)
are the same at every step: compute them once, store them next to the data,
and 3T trains at the cost of CLIP plus the two linear heads (which do train,
so they run on the cached features at every step).

Layout of a cache folder:
- `features.npy`: float32 `(images, feature_dim)`; for a model with several
  frozen towers (`third_towers`), `features_<name>.npy` for each;
- `image_ids.npy`: int64 `(images,)`, the `image_id` of each row;
- `image_hashes.npy`: int64 `(images,)`, a fingerprint of each image's
  stored bytes, checked as the data are read, so a changed data set (ids
  reused for other images) is refused instead of training on wrong features;
- `manifest.json`: the format version; per frozen tower its layer name,
  fingerprint (see `third_tower_fingerprint`), feature size and file; the
  image size and row count.
"""

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from keras_3t.data.decoding import decode_image
from keras_3t.image_converter import resize_and_center_crop

FILES = ("image_ids.npy", "image_hashes.npy", "manifest.json")
FORMAT_VERSION = 2
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
    if os.path.exists(cache_dir) and os.listdir(cache_dir) and not overwrite:
        raise FileExistsError(
            f"{cache_dir} exists and is not empty; pass overwrite=True to "
            "replace the cache (nothing was written)."
        )
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
    files = _feature_files(model)
    manifest = {
        "format_version": FORMAT_VERSION,
        "towers": {
            name: {
                "layer": tower.name,
                "fingerprint": third_tower_fingerprint(tower),
                "feature_dim": int(tower.feature_dim),
                "file": files[name],
            }
            for name, tower in towers.items()
        },
        "image_size": int(image_size),
        "images": int(sum(len(part) for part in image_ids)),
        "preprocessing": "decode to float [0, 1] RGB, resize the shorter side, central crop",
    }
    arrays = {files[name]: np.concatenate(parts) for name, parts in features.items()}
    arrays["image_ids.npy"] = np.concatenate(image_ids).astype("int64")
    arrays["image_hashes.npy"] = np.concatenate(hashes).astype("int64")
    _write_atomically(cache_dir, arrays, manifest)
    return manifest


def feature_array_names(model):
    """The name of each frozen tower's features array: one tower's is `features`.

    The cache stores each as `<name>.npy`, a feature shard as an array of its `.npz`.
    """
    if model.third_tower is not None:
        return {name: "features" for name in model.third_towers}
    return {name: f"features_{name}" for name in model.third_towers}


def _feature_files(model):
    return {name: f"{array}.npy" for name, array in feature_array_names(model).items()}


def _write_atomically(cache_dir, arrays, manifest):
    parent = os.path.dirname(cache_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".third_tower_cache.", dir=parent)
    try:
        for name, array in arrays.items():
            np.save(os.path.join(staging, name), array)
        with open(os.path.join(staging, "manifest.json"), "w") as file:
            json.dump(manifest, file, indent=1)
        previous = None
        if os.path.exists(cache_dir):
            previous = tempfile.mkdtemp(prefix=".third_tower_cache.old.", dir=parent)
            os.rename(cache_dir, os.path.join(previous, "cache"))
        os.rename(staging, cache_dir)
        if previous is not None:
            shutil.rmtree(previous)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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
    check_three_towers(model)
    files = _feature_files(model)
    missing = [
        name
        for name in (*FILES, *files.values())
        if not os.path.exists(os.path.join(cache_dir, name))
    ]
    if missing:
        raise FileNotFoundError(
            f"{cache_dir} is not a complete third-tower cache for this model: missing "
            f"{', '.join(missing)}. Write it with write_third_tower_cache."
        )
    try:
        with open(os.path.join(cache_dir, "manifest.json")) as file:
            manifest = json.load(file)
        features = {
            name: np.load(os.path.join(cache_dir, file), allow_pickle=False)
            for name, file in files.items()
        }
        image_ids = np.load(os.path.join(cache_dir, "image_ids.npy"), allow_pickle=False)
        hashes = np.load(os.path.join(cache_dir, "image_hashes.npy"), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(
            f"The third-tower cache {cache_dir} is corrupt ({type(error).__name__}: "
            f"{error}); write it again with overwrite=True."
        ) from None
    version = manifest.get("format_version", 0)
    if version != FORMAT_VERSION:
        newer_or_older = "newer" if version > FORMAT_VERSION else "older"
        raise ValueError(
            f"The third-tower cache {cache_dir} has format version {version}, "
            f"{newer_or_older} than this keras-3t reads ({FORMAT_VERSION}): write "
            "the cache again (overwrite=True), or use the keras-3t that wrote it."
        )
    rows = manifest.get("images")
    shapes = [array.shape for array in (*features.values(), image_ids, hashes)]
    if (
        any(array.ndim != 2 or array.shape[0] != rows for array in features.values())
        or image_ids.shape != (rows,)
        or hashes.shape != (rows,)
    ):
        raise ValueError(
            f"The third-tower cache {cache_dir} is corrupt: its manifest counts "
            f"{rows} images, its arrays have shapes {', '.join(map(str, shapes))}."
        )
    check_cached_towers(
        f"The third-tower cache {cache_dir}",
        {
            name: (tower["fingerprint"], features[name].shape[1] if name in features else None)
            for name, tower in manifest["towers"].items()
        },
        model,
    )
    if model.third_tower is not None:
        features = features[next(iter(features))]
    return ThirdTowerCache(features, image_ids, hashes, manifest["image_size"], cache_dir)


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
