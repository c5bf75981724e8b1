"""The frozen towers' features as shards beside the data shards.

At web scale the third tower's features do not fit in memory: at 768
dimensions they take 3 GB per million images. So, as DataComp-style
datasets keep teacher embeddings next to their data shards, each data
shard gets a feature shard: the same examples in the same order, keyed.
Training reads a data shard and its feature shard together
(`from_img2dataset(..., third_tower_features=...)`), so memory does not
depend on the number of images.

Layout of a features folder (that of the in-memory third-tower cache,
which holds one `.npz` for all images instead):
- `manifest.json`: the format version, the layout (`"shards"`), the crop
  size, and per frozen tower its layer name, fingerprint
  (`third_tower_fingerprint`), feature size and array name;
- `<data shard's file name>.npz` per data shard (`00000.tar.npz`):
  `keys` (the data shard's keys, in its order), `image_hashes` (int64, a
  fingerprint of each stored image's bytes) and `features` (float32
  `(rows, feature_dim)`), or `features_<name>` per tower for a model with
  several frozen towers.

Each feature shard is written to a temporary file and renamed into place,
so a killed run leaves no partial shard, and a shard whose file exists is
not computed again: run the same command to resume. The data shards split
over processes or hosts (`worker`, `workers`), which share nothing but the
file system.
"""

import hashlib
import json
import os

import numpy as np

from keras_3t.atomic_files import write_atomically
from keras_3t.data.decoding import decoded_batches
from keras_3t.data.shards import RECORDS
from keras_3t.data.shards import UnreadableShardError
from keras_3t.data.shards import expand_shards
from keras_3t.data.shards import shard_format
from keras_3t.data.third_tower_cache import MANIFEST
from keras_3t.data.third_tower_cache import check_three_towers
from keras_3t.data.third_tower_cache import feature_array_names
from keras_3t.data.third_tower_cache import features_manifest
from keras_3t.data.third_tower_cache import read_features_manifest
from keras_3t.image_converter import resize_and_center_crop


class FeatureShardError(ValueError):
    """A feature shard that does not belong to its data shard (other data, or another tower)."""


def feature_shard_name(data_shard):
    """The feature shard's file name for a data shard: `00000.tar` → `00000.tar.npz`."""
    return os.path.basename(data_shard) + ".npz"


def image_fingerprint(image):
    """An int64 fingerprint of one stored image's bytes."""
    digest = hashlib.blake2b(bytes(image), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def write_feature_shards(
    model,
    shards,
    features_dir,
    image_size,
    worker=0,
    workers=1,
    batch_size=64,
    on_bad_data="raise",
):
    """Computes the frozen towers' features of each data shard into a feature shard.

    Every example of a data shard, in the shard's order, is decoded,
    resized and centrally cropped to `image_size` (what `make_dataset`
    does with `random_crop_scale=None`) and embedded by each of
    `model.third_towers`' frozen backbones. An image that does not decode
    gets zero features: `make_dataset` reports or skips it when training.

    Args:
        model: a `ThreeTowerModel` with objective `"3t"`.
        shards: img2dataset's shards, as `from_img2dataset` takes them.
        features_dir: the folder of feature shards; made if missing. If it
            holds a manifest, it must be this model's towers and
            `image_size`.
        image_size: int, the side of the crops the model trains on.
        worker, workers: this process computes the data shards
            `worker`, `worker + workers`, ... of the sorted list.
        batch_size: images embedded per batch.
        on_bad_data: `"raise"` on a damaged data shard, or `"skip"` to
            write the features of the records before the damage (what
            `from_img2dataset(..., on_bad_data="skip")` reads of it).

    Returns:
        `{"written": [...], "skipped": [...]}`: the feature shards this call
        wrote, and those it found done.

    Example:
    >>> import io, os, tarfile, tempfile
    >>> import numpy as np, tensorflow as tf
    >>> from keras_3t.data import write_feature_shards
    >>> from keras_3t.presets import load
    >>> folder = tempfile.mkdtemp()
    >>> with tarfile.open(os.path.join(folder, "00000.tar"), "w") as tar:
    ...     for name, data in [("0.png", tf.io.encode_png(np.zeros((8, 8, 3), "uint8")).numpy()),
    ...                        ("0.txt", b"a 0")]:
    ...         info = tarfile.TarInfo(name)
    ...         info.size = len(data)
    ...         tar.addfile(info, io.BytesIO(data))
    >>> done = write_feature_shards(load("3t_tiny"), folder, os.path.join(folder, "features"), 56)
    >>> [os.path.basename(path) for path in done["written"]]
    ['00000.tar.npz']
    """
    import keras

    check_three_towers(model)
    if not 0 <= worker < workers:
        raise ValueError(f"worker must be in [0, {workers}); got {worker}.")
    files = expand_shards(shards)
    names = [feature_shard_name(f) for f in files]
    if len(set(names)) < len(names):
        raise ValueError(
            "Two data shards share a file name, so their feature shards would too: "
            "write each folder's features into a features folder of its own."
        )
    records = RECORDS[shard_format(files)]
    manifest = features_manifest(model, image_size, "shards")
    _write_or_check_manifest(features_dir, manifest)
    towers = model.third_towers
    inputs = keras.Input((image_size, image_size, 3))
    extractor = keras.Model(
        inputs, {name: tower.features(inputs) for name, tower in towers.items()}
    )
    crops = _crop_function(image_size)
    keys = feature_array_names(model)
    done = {"written": [], "skipped": []}
    for path in files[worker::workers]:
        target = os.path.join(features_dir, feature_shard_name(path))
        if os.path.exists(target):
            done["skipped"].append(target)
            continue
        arrays = {"keys": [], "image_hashes": [], **{keys[name]: [] for name in towers}}

        def embed(images):
            for name, values in extractor.predict_on_batch(crops(images)).items():
                arrays[keys[name]].append(np.asarray(values, "float32"))

        pending = []
        try:
            for key, image, _ in records(path):
                arrays["keys"].append(key)
                arrays["image_hashes"].append(image_fingerprint(image))
                pending.append(image)
                if len(pending) == batch_size:
                    embed(pending)
                    pending = []
        except UnreadableShardError:
            if on_bad_data == "raise":
                raise
        if pending:
            embed(pending)
        rows = len(arrays["keys"])
        shard = {
            "keys": np.asarray(arrays["keys"], dtype=bytes),
            "image_hashes": np.asarray(arrays["image_hashes"], "int64"),
            **{
                keys[name]: np.concatenate(arrays[keys[name]])
                if rows
                else np.zeros((0, tower.feature_dim), "float32")
                for name, tower in towers.items()
            },
        }
        write_atomically(target, lambda file: np.savez(file, **shard))
        done["written"].append(target)
    return done


def _crop_function(image_size):
    """A function from a list of encoded images to their float32 central crops (NumPy)."""
    import tensorflow as tf

    def crop(decoded):
        decoded = tf.image.convert_image_dtype(decoded, tf.float32)
        return resize_and_center_crop(decoded, (image_size, image_size))

    decode = decoded_batches(crop)
    return lambda images: decode(images)[0]


def _write_or_check_manifest(features_dir, manifest):
    os.makedirs(features_dir, exist_ok=True)
    path = os.path.join(features_dir, MANIFEST)
    if os.path.exists(path):
        with open(path) as file:
            existing = json.load(file)
        if existing != manifest:
            raise FeatureShardError(
                f"{features_dir} holds feature shards of other frozen towers or another "
                "image size (its manifest.json differs from this model's): write this "
                "model's features into another folder."
            )
        return
    # Several workers may write it at once; each writes the same content.
    write_atomically(path, lambda file: file.write(json.dumps(manifest, indent=1).encode()))


class FeatureShards:
    """A folder of feature shards checked against a model; see `load_feature_shards`.

    Attributes:
        path: the features folder.
        image_size: the side of the crops the features were computed on.
        towers: `{name: (array name, feature_dim)}`.
        single: True for a model with one frozen tower (features are one
            array, not a dict by tower name).
    """

    def __init__(self, path, image_size, towers, single):
        self.path = path
        self.image_size = image_size
        self.towers = towers
        self.single = single

    def signature(self):
        """The `tf.TensorSpec` of one example's `"third_features"`."""
        import tensorflow as tf

        specs = {name: tf.TensorSpec([dim], tf.float32) for name, (_, dim) in self.towers.items()}
        return next(iter(specs.values())) if self.single else specs

    def shard_path(self, data_shard):
        return os.path.join(self.path, feature_shard_name(data_shard))

    def check_shards(self, data_shards):
        """Refuses data shards without their feature shard, naming them."""
        missing = [f for f in data_shards if not os.path.exists(self.shard_path(f))]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} data shard(s) have no feature shard in {self.path}, e.g. "
                f"{missing[0]} (expected {self.shard_path(missing[0])}): write them with "
                "write_feature_shards (recipes/feature_shards.py)."
            )

    def features_of(self, example):
        """The example's `"third_features"` (inside `tf.data`)."""
        return example["third_features"]

    def attach(self, data_shard, records):
        """`records` of `data_shard`, each with its row of features appended.

        Raises:
            FeatureShardError: the feature shard does not match the data
                shard: another key or image at some row, or another count.
        """
        target = self.shard_path(data_shard)
        try:
            with np.load(target, allow_pickle=False) as file:
                arrays = {name: file[name] for name in file.files}
            keys, hashes = arrays["keys"], arrays["image_hashes"]
            features = {name: arrays[array] for name, (array, _) in self.towers.items()}
        except (ValueError, OSError, KeyError, EOFError) as error:
            raise FeatureShardError(
                f"The feature shard {target} is corrupt ({type(error).__name__}: {error}); "
                "delete it and write it again."
            ) from None
        rewrite = "delete it and write it again (write_feature_shards)."
        row = -1
        for row, (key, image, caption) in enumerate(records):
            if row >= len(keys):
                raise FeatureShardError(
                    f"{data_shard} has more records than its feature shard {target} "
                    f"({len(keys)}); key {key.decode()} has no features: {rewrite}"
                )
            if keys[row] != key or hashes[row] != image_fingerprint(image):
                what = "key" if keys[row] != key else "image"
                raise FeatureShardError(
                    f"The feature shard {target} was written for other data: its row {row} "
                    f"is key {keys[row].decode()}, and {data_shard} has key "
                    f"{key.decode()} there (the {what} differs): {rewrite}"
                )
            row_features = {name: values[row] for name, values in features.items()}
            if self.single:
                row_features = next(iter(row_features.values()))
            yield key, image, caption, row_features
        if row + 1 != len(keys):
            raise FeatureShardError(
                f"{data_shard} has {row + 1} records and its feature shard {target} "
                f"{len(keys)}: {rewrite}"
            )


def load_feature_shards(features_dir, model):
    """The feature shards in `features_dir`, checked against `model`'s frozen towers.

    Args:
        features_dir: the folder `write_feature_shards` wrote.
        model: the `ThreeTowerModel` that will train on them; its frozen
            towers must be those that wrote them (same frozen weights).

    Returns:
        A `FeatureShards`, for `from_img2dataset(..., third_tower_features=...)`
        and `make_dataset(..., third_tower_cache=...)`.
    """
    manifest = read_features_manifest(
        features_dir,
        model,
        "shards",
        f"The feature folder {features_dir}",
        "Write them with write_feature_shards (recipes/feature_shards.py).",
    )
    towers = manifest["towers"]
    return FeatureShards(
        features_dir,
        manifest["image_size"],
        {name: (tower["array"], tower["feature_dim"]) for name, tower in towers.items()},
        single=model.third_tower is not None,
    )
