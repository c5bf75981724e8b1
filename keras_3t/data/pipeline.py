"""From source examples to model batches, on `tf.data` for every backend."""

import numpy as np

from keras_3t.data.bad_data import assert_with_lazy_message
from keras_3t.data.bad_data import bad_example_message
from keras_3t.data.bad_data import check_bad_data_mode
from keras_3t.data.decoding import decode_image
from keras_3t.data.feature_shards import FeatureShards
from keras_3t.image_converter import resize_and_center_crop

# open_clip's default for CLIP training: crops of 90–100 % of the image area.
RANDOM_CROP_SCALE = (0.9, 1.0)


def make_dataset(
    examples,
    preprocessor,
    image_size,
    batch_size,
    training=True,
    seed=None,
    random_crop_scale=RANDOM_CROP_SCALE,
    flip=False,
    shuffle_buffer=None,
    on_bad_data="raise",
    bad_data=None,
    num_shards=1,
    shard_index=0,
    repeat=None,
    input_context=None,
    third_tower_cache=None,
    start_step=0,
):
    """Batches `{"images", "token_ids", "padding_mask"}` for `ThreeTowerModel`.

    Decodes each image to float32 in [0, 1] and RGB; in training a random
    resized crop (area fraction in `random_crop_scale`, aspect ratio 3/4 to
    4/3) and optionally a horizontal flip; in evaluation (and in training
    with `random_crop_scale=None`) a resize of the shorter side and a
    central crop. Captions are tokenized with the model's
    `preprocessor` after batching. Training batches drop the remainder.

    Bad examples: an empty caption or an image that does not decode (for
    any reason: not image data, truncated, corrupt) raises
    (`on_bad_data="raise"`, the default: nothing trains on garbage silently)
    an `InvalidArgumentError` as the dataset is read, naming the example's
    `image_id` and where it was read (its `"source"`, e.g. `"captions.csv,
    line 9: images/x.jpg"`), or is dropped and counted in `bad_data`
    (`"skip"`; log the counts with `keras_3t.data.BadDataReport(bad_data)`).
    `"source"` is not passed on to the batches.

    Args:
        examples: a source dataset (`from_tfds`, `from_caption_file`,
            `from_tfrecords`).
        preprocessor: the model's `ThreeTowerPreprocessor` (or any layer
            mapping `{"images", "captions"}` to a batch).
        image_size: int, the side of the square output images.
        batch_size: examples per batch (the global batch).
        training: bool. Shuffle, augment, repeat, drop the remainder.
        seed: int or None. With a seed, shuffling and augmentation are the
            same on every run: the first iterator of the dataset gives the
            same stream (later iterators of the same dataset object are
            shuffled on), and each example's crop is drawn from `(seed, its
            position)`, whatever the parallelism.
        random_crop_scale: `(min, max)` image-area fraction of training
            crops, or None for no random crop.
        flip: bool. Random horizontal flips in training (off by default:
            captions often say left and right).
        shuffle_buffer: examples in the shuffle buffer; default 10,000 for
            encoded images, 1,000 for decoded ones (TFDS sources), which
            take ~1 MB each at COCO's size.
        on_bad_data: `"raise"` or `"skip"`.
        bad_data: a `BadDataCounter`, needed with `"skip"`.
        num_shards, shard_index: keep every `num_shards`-th example from
            `shard_index` (one input pipeline per worker; for TFRecords prefer
            sharding files with `from_tfrecords(num_shards=...)`).
        repeat: bool; default: repeat in training only.
        input_context: a `tf.distribute.InputContext` (from
            `strategy.distribute_datasets_from_function`): shards by its
            input pipeline and makes `batch_size` the global batch, each
            pipeline batching its per-replica share.
        third_tower_cache: a `keras_3t.data.ThirdTowerCache`
            (`load_third_tower_cache`), or the `FeatureShards`
            (`load_feature_shards`) that `from_img2dataset` read beside
            the data: batches also carry `"third_features"`, the third
            tower's cached features of each image, and the model skips its
            third backbone. Needs the deterministic crop the features were
            computed on: no random crop (`random_crop_scale=None`), no
            flip, their `image_size`.
        start_step: batches to skip, to resume a run where it stopped
            (`keras_3t.callbacks.TrainingCheckpoint.initial_step`): with the
            same seed, the dataset continues with the batch the run would
            have read next. Skipped examples are not decoded, except with
            `on_bad_data="skip"`, which decodes them to drop the same
            undecodable images as the run did.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> from keras_3t.data import make_dataset
    >>> from keras_3t.preprocessing import ThreeTowerPreprocessor, caption_tokenizer
    >>> examples = tf.data.Dataset.from_tensor_slices({
    ...     "image": np.zeros((4, 30, 40, 3), "uint8"),
    ...     "caption": ["a red square", "a blue square", "red", "blue"],
    ...     "image_id": np.arange(4)})
    >>> preprocessor = ThreeTowerPreprocessor(caption_tokenizer(
    ...     ["[PAD]", "[UNK]", "a", "red", "blue", "square"]), sequence_length=4)
    >>> batch = next(iter(make_dataset(examples, preprocessor, 16, 2, seed=0)))
    >>> {key: tuple(value.shape) for key, value in batch.items()}
    {'token_ids': (2, 4), 'padding_mask': (2, 4), 'images': (2, 16, 16, 3)}
    """
    import tensorflow as tf

    check_bad_data_mode(on_bad_data, bad_data)
    carried = "third_features" in examples.element_spec
    if carried and not isinstance(third_tower_cache, FeatureShards):
        raise ValueError(
            "The examples carry third_features (from_img2dataset(..., "
            "third_tower_features=shards)): pass the same FeatureShards as "
            "make_dataset(..., third_tower_cache=shards), which checks the crops."
        )
    if isinstance(third_tower_cache, FeatureShards) and not carried:
        raise ValueError(
            "third_tower_cache is feature shards, but the examples carry no "
            "third_features: read them with from_img2dataset(..., "
            "third_tower_features=shards)."
        )
    if third_tower_cache is not None:
        _check_cache_use(third_tower_cache, training, random_crop_scale, flip, image_size)
    if input_context is not None:
        num_shards = input_context.num_input_pipelines
        shard_index = input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if num_shards > 1:
        examples = examples.shard(num_shards, shard_index)
    if shuffle_buffer is None:
        encoded = examples.element_spec["image"].dtype == tf.string
        shuffle_buffer = 10_000 if encoded else 1_000
    if start_step < 0:
        raise ValueError(f"start_step must be at least 0; got {start_step}.")
    base_seed = np.int64(seed if seed is not None else np.random.randint(2**31))
    if training:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat if repeat is not None else training:
        examples = examples.repeat()
    examples = _drop_or_check_empty_captions(examples, on_bad_data, bad_data)
    # One stateless seed per example: augmentation is reproducible whatever
    # the parallelism.
    examples = examples.enumerate()
    skipped_examples = start_step * batch_size
    if on_bad_data == "raise":
        # Nothing is dropped after this point, so skipping here is exact.
        examples = examples.skip(skipped_examples)
    if third_tower_cache is not None:
        # Plain TensorFlow ops without Python control flow: called as they
        # are, not through AutoGraph's conversion.
        features_of = tf.autograph.experimental.do_not_convert(third_tower_cache.features_of)

    def load(index, example):
        if on_bad_data == "skip":
            # Counted as undecodable until the decode succeeds; an example
            # whose decode fails is dropped by `ignore_errors` below, so the
            # images that stay counted are those dropped, each once.
            image_key = tf.strings.as_string(example["image_id"])
            pending = bad_data.add("undecodable_image", image_key)
            with tf.control_dependencies([pending]):
                image = decode_image(example["image"], example["image_id"], on_bad_data)
            with tf.control_dependencies([image]):
                done = bad_data.discard("undecodable_image", image_key)
            with tf.control_dependencies([done]):
                image = tf.identity(image)
        else:
            image = decode_image(
                example["image"], example["image_id"], on_bad_data, _source(example)
            )
        crop_seed = tf.stack([base_seed, tf.cast(index, tf.int64)])
        if training and random_crop_scale is not None:
            image = _random_resized_crop(image, image_size, random_crop_scale, crop_seed)
        else:
            image = resize_and_center_crop(image, (image_size, image_size))
        if training and flip:
            image = tf.image.stateless_random_flip_left_right(image, crop_seed + 1)
        loaded = {"images": image, "captions": example["caption"]}
        if third_tower_cache is not None:
            loaded["third_features"] = features_of(example)
        return loaded

    def tokenize(batch):
        tokenized = preprocessor({"images": batch["images"], "captions": batch["captions"]})
        if third_tower_cache is not None:
            tokenized["third_features"] = batch["third_features"]
        return tokenized

    images = examples.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if on_bad_data == "skip":
        images = images.ignore_errors().skip(skipped_examples)
    return (
        images.batch(batch_size, drop_remainder=training)
        .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _check_cache_use(cache, training, random_crop_scale, flip, image_size):
    if training and (random_crop_scale is not None or flip):
        raise ValueError(
            "Cached third-tower features were computed on each image's "
            "central crop, but this pipeline augments it (random_crop_scale="
            f"{random_crop_scale}, flip={flip}): the main towers would see "
            "other pixels than the cached features describe. Pass "
            "random_crop_scale=None and flip=False with third_tower_cache, "
            "or train with the live third tower."
        )
    if image_size != cache.image_size:
        raise ValueError(
            f"The third-tower cache {cache.path} was computed on "
            f"{cache.image_size}-pixel crops; this pipeline makes {image_size}."
        )


def _drop_or_check_empty_captions(examples, on_bad_data, bad_data):
    import tensorflow as tf

    def non_empty(example):
        return tf.strings.length(tf.strings.strip(example["caption"])) > 0

    if on_bad_data == "raise":

        def check(example):
            assertion = assert_with_lazy_message(
                non_empty(example),
                lambda: bad_example_message("Empty caption", example["image_id"], _source(example)),
            )
            with tf.control_dependencies([assertion]):
                return tf.nest.map_structure(tf.identity, example)

        return examples.map(check)

    def keep(example):
        ok = non_empty(example)
        # A caption row's key: where it was read, else its image and text.
        source = _source(example)
        key = (
            source
            if source is not None
            else tf.strings.join(
                [tf.strings.as_string(example["image_id"]), example["caption"]], "\n"
            )
        )
        counted = tf.cond(ok, tf.no_op, lambda: bad_data.add("empty_caption", key))
        with tf.control_dependencies([counted]):
            return tf.identity(ok)

    return examples.filter(keep)


def _source(example):
    """Where an example comes from (`"captions.csv, line 9: images/x.jpg"`), if its source says."""
    import tensorflow as tf

    source = example.get("source")
    return source if source is not None and source.dtype == tf.string else None


def _random_resized_crop(image, size, scale, seed):
    import tensorflow as tf

    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        area_range=scale,
        aspect_ratio_range=(3 / 4, 4 / 3),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(crop, (size, size), antialias=True)


def retrieval_task(examples, preprocessor, image_size, max_images=None, batch_size=64):
    """A retrieval task for `keras_3t.evaluation.evaluate_model` from a source.

    Args:
        examples: a source read with `per_caption=False` (one example per
            image, all its captions as `"captions"`).
        preprocessor: the model's `ThreeTowerPreprocessor`.
        image_size: the side of the model's square images.
        max_images: keep the first this many images (the images are held in
            memory: 224×224 float32 is 0.6 MB each).
        batch_size: images decoded per batch.

    Returns:
        `{"images", "texts", "text_to_image"}`: every image (resized and
        centrally cropped), every caption tokenized, and for each caption
        the index of its image.
    """
    import tensorflow as tf

    if "captions" not in examples.element_spec:
        raise ValueError(
            "retrieval_task needs one example per image with all its captions: "
            "read the source with per_caption=False."
        )
    if max_images is not None:
        examples = examples.take(max_images)

    def load(example):
        image = decode_image(example["image"], example["image_id"], "raise", _source(example))
        return resize_and_center_crop(image, (image_size, image_size)), example["captions"]

    images, captions, owners = [], [], []
    for index, (image, image_captions) in enumerate(
        examples.map(load, num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator()
    ):
        images.append(image)
        captions += [caption.decode() for caption in image_captions]
        owners += [index] * len(image_captions)
    if not images:
        raise ValueError("retrieval_task got no examples.")
    texts = {}
    for start in range(0, len(captions), batch_size):
        for key, value in preprocessor(captions[start : start + batch_size]).items():
            texts.setdefault(key, []).append(np.asarray(value))
    return {
        "images": np.stack(images),
        "texts": {key: np.concatenate(parts) for key, parts in texts.items()},
        "text_to_image": np.asarray(owners),
    }
