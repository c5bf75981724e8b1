"""The checks of `ThreeTowerModel`'s arguments and inputs.

Each raises a ValueError (or TypeError) that names the problem and the fix;
the model calls them before any tower runs.
"""

import re

import keras
import numpy as np
from keras import ops

from keras_3t.console import raised_as_is
from keras_3t.distributed import check_replica_batches
from keras_3t.image_converter import check_value_range
from keras_3t.model.frozen_towers import features_by_name
from keras_3t.training.errors import BATCH_TOO_SMALL
from keras_3t.training.errors import assert_batch_size_at_least_two

OBJECTIVES = ("3t", "lit", "clip")
LOSSES = ("softmax", "sigmoid")
ADAPTOR_INPUTS = ("pooled", "embedding")
BATCH_KEYS = ("images", "token_ids", "padding_mask")


def check_not_empty(shape, what):
    """Raises if a batch of `what` has no rows."""
    if len(shape) and shape[0] == 0:
        raise raised_as_is(
            ValueError(f"Got an empty batch of {what} (shape {tuple(shape)}): pass at least one.")
        )


def image_batch(model, images):
    """Images as the towers take them, through `image_converter` if needed."""
    if isinstance(images, dict):
        raise TypeError(
            f"encode_image takes images, not {describe(images)}: pass the "
            "batch's images (e.g. batch['images'])."
        )
    if isinstance(images, (str, bytes, list, tuple)) or not hasattr(images, "shape"):
        return ops.convert_to_numpy(model.image_converter(images))
    check_not_empty(images.shape, "images")
    if len(images.shape) != 4:
        raise ValueError(
            "images must be a batch (batch, height, width, channels) or a "
            f"list of images; got shape {tuple(images.shape)}. For one "
            "image, pass images[None] or [image]."
        )
    size, channels = model.image_converter.image_size, model.image_converter.channels
    ready = (
        is_float(images.dtype)
        and (size is None or tuple(images.shape[1:3]) == tuple(size))
        and images.shape[3] == channels
    )
    if not ready:
        return ops.convert_to_numpy(model.image_converter(images))
    check_images(model, images)
    check_value_range(*(float(ops.convert_to_numpy(f(images))) for f in (ops.min, ops.max)))
    return images


def check_images(model, images):
    """Raises unless `images` is a float batch of the towers' size."""
    if not is_float(images.dtype):
        dtype = keras.backend.standardize_dtype(images.dtype)
        raise ValueError(
            f"images must be floats in [0, 1]; got {dtype}. Convert raw "
            "images with model.image_converter (uint8 0-255 is scaled to "
            "[0, 1]), e.g. mapped over the tf.data pipeline; "
            "model.encode_image does it for you."
        )
    shape = tuple(images.shape)
    check_not_empty(shape, "images")
    if len(shape) != 4:
        raise ValueError(
            "images must be a float batch of shape (batch, height, width, "
            f"channels); got rank {len(shape)}, shape {shape}."
        )
    for tower in (model.image_tower, *model.third_towers.values()):
        for axis, (got, expected) in enumerate(zip(shape[1:], tower.image_shape)):
            if expected is not None and got is not None and got != expected:
                what = ("height", "width", "channel count")[axis]
                raise ValueError(
                    f"images have the wrong {what}: got shape {shape}, but "
                    f"the {tower.name} expects (batch, "
                    f"{', '.join(str(d) for d in tower.image_shape)})."
                )


def check_text(model, inputs):
    """Raises unless `inputs` holds token ids and a padding mask that fit."""
    if not isinstance(inputs, dict) or "token_ids" not in inputs:
        raise ValueError(
            "Text inputs must be a dict with 'token_ids' and "
            f"'padding_mask'; got {describe(inputs)}."
        )
    if "padding_mask" not in inputs:
        raise ValueError(
            "token_ids were given without a padding_mask: pass "
            "{'token_ids': ..., 'padding_mask': ...} (bool, true for real "
            "tokens), as keras-hub preprocessors produce."
        )
    ids_shape = tuple(inputs["token_ids"].shape)
    mask_shape = tuple(inputs["padding_mask"].shape)
    check_not_empty(ids_shape, "token_ids")
    if len(ids_shape) != 2:
        raise ValueError(f"token_ids must have shape (batch, length); got {ids_shape}.")
    if mask_shape != ids_shape:
        raise ValueError(
            f"padding_mask shape {mask_shape} does not match token_ids shape {ids_shape}."
        )
    max_length = model.text_tower.sequence_length
    if ids_shape[1] is not None and ids_shape[1] > max_length:
        raise ValueError(
            f"token_ids have length {ids_shape[1]}, longer than the text "
            f"tower's sequence_length {max_length}."
        )


def check_batch(model, batch, replicas):
    """Raises a ValueError naming what is wrong with a training batch."""
    if not isinstance(batch, dict):
        raise ValueError(
            f"Training batches must be dicts with keys {BATCH_KEYS}; got {describe(batch)}."
        )
    if "images" not in batch:
        raise ValueError(f"The batch has no 'images'; it has keys {sorted(batch)}.")
    check_images(model, batch["images"])
    check_text(model, batch)
    parts = {key: batch[key] for key in BATCH_KEYS}
    if "third_features" in batch:
        check_third_features(model, batch["third_features"])
        several = model.third_tower is None
        parts.update(
            ("third_features" + (f"[{name!r}]" if several else ""), features)
            for name, features in features_by_name(model, batch["third_features"]).items()
        )
    batch_sizes = {part.shape[0] for part in parts.values() if part.shape[0] is not None}
    if len(batch_sizes) > 1:
        raise ValueError(
            f"The batch's {', '.join(parts)} have different batch sizes: {sorted(batch_sizes)}."
        )
    check_replica_batches(replicas, batch["images"])
    if replicas.count > 1:
        return  # a replica may hold one row of a larger global batch
    if not batch_sizes:
        assert_batch_size_at_least_two(batch["images"])
    elif batch_sizes.pop() < 2:
        raise ValueError(BATCH_TOO_SMALL)


def check_third_features(model, features):
    if model.objective != "3t":
        raise ValueError(
            f"The batch has 'third_features', but objective={model.objective!r} "
            "uses no third tower: drop the third-tower cache from the data."
        )
    several = model.third_tower is None
    if several != isinstance(features, dict) or (
        several and set(features) != set(model.third_towers)
    ):
        expected = (
            f"a dict with one entry per frozen tower, {sorted(model.third_towers)}"
            if several
            else "one (batch, features) tensor"
        )
        got = f"a dict with keys {sorted(features)}" if isinstance(features, dict) else "a tensor"
        raise ValueError(f"third_features must be {expected}; got {got}.")
    for name, values in features_by_name(model, features).items():
        tower = model.third_towers[name]
        shape = tuple(values.shape)
        expected = tower.feature_dim
        if len(shape) != 2 or shape[1] != expected:
            what = "third_features" + (f"[{name!r}]" if several else "")
            raise ValueError(
                f"{what} must have shape (batch, {expected}) (the {tower.name}'s pooled "
                f"features); got {shape}. Was the cache written with another third tower?"
            )


# A frozen tower's name becomes part of pair, metric and layer names.
TOWER_NAME = re.compile(r"[a-z][a-z0-9_]*")
RESERVED_TOWER_NAMES = ("text", "main")


def check_arguments(
    image_tower, text_tower, third_tower, third_towers, objective, loss, adaptor_input
):
    """Raises on `ThreeTowerModel` arguments that do not fit together.

    Returns:
        The frozen towers by name: `{"third": third_tower}`, `third_towers`,
        or `{}` for LiT and CLIP.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")
    if adaptor_input not in ADAPTOR_INPUTS:
        raise ValueError(f"adaptor_input must be one of {ADAPTOR_INPUTS}; got {adaptor_input!r}.")
    if third_tower is not None and third_towers:
        raise ValueError(
            "Pass third_tower (one frozen tower) or third_towers (a dict of "
            "them by name), not both."
        )
    towers = {"third": third_tower} if third_tower is not None else dict(third_towers or {})
    if objective == "3t" and not towers:
        raise ValueError(
            "objective='3t' needs a third_tower (a frozen ThirdTower), or "
            "third_towers (a dict of them by name)."
        )
    if objective != "3t" and towers:
        names = ", ".join(repr(tower.name) for tower in towers.values())
        raise ValueError(
            f"objective={objective!r} uses no third tower; got {names}. "
            "Use objective='3t' to train with it."
        )
    for name in third_towers or {}:
        if not isinstance(name, str) or not TOWER_NAME.fullmatch(name):
            raise ValueError(
                f"third_towers' names become pair and metric names (loss_image_<name>): "
                f"use lowercase letters, digits and underscores, starting with a "
                f"letter; got {name!r}."
            )
        if name in RESERVED_TOWER_NAMES:
            raise ValueError(
                f"{name!r} cannot name a frozen tower: 'text' would make its image "
                "pair 'image_text', the main pair's name, and 'main' names the main "
                "towers' path in the α-combination."
            )
    if objective == "lit" and not image_tower.frozen:
        raise ValueError(
            "objective='lit' locks the image tower: pass an ImageTower built "
            "with frozen=True around a pretrained backbone."
        )
    if image_tower.output_dim != text_tower.output_dim:
        raise ValueError(
            f"The image tower's embedding size ({image_tower.output_dim}) "
            f"differs from the text tower's ({text_tower.output_dim}); both "
            "must project to the same space."
        )
    return towers


def check_pair_weights(pair_weights, pairs):
    """The pairs' weights as a tuple in `pairs` order.

    Args:
        pair_weights: None (equal weights), a sequence in `pairs` order, or
            a dict by pair name (a pair left out weighs 0).
        pairs: the model's pair names.
    """
    if pair_weights is None:
        return tuple(1.0 / len(pairs) for _ in pairs)
    if isinstance(pair_weights, dict):
        unknown = sorted(set(pair_weights) - set(pairs))
        if unknown:
            raise ValueError(
                f"pair_weights names unknown pair(s) {unknown}; this model's pairs "
                f"are {list(pairs)}."
            )
        weights = tuple(float(pair_weights.get(pair, 0.0)) for pair in pairs)
    else:
        weights = tuple(float(w) for w in pair_weights)
    # LiT and CLIP configs saved before models could have several frozen
    # towers carry three weights; their one pair's loss reads none of them.
    legacy = len(pairs) == 1 and len(weights) == 3
    if (
        (len(weights) != len(pairs) and not legacy)
        or any(w < 0 for w in weights)
        or sum(weights) == 0
    ):
        raise ValueError(
            f"pair_weights must be {len(pairs)} non-negative weights, one per pair "
            f"({', '.join(pairs)}), not all zero; got {pair_weights!r}."
        )
    return weights


def is_float(dtype):
    return keras.backend.standardize_dtype(dtype).startswith(("float", "bfloat"))


def are_strings(value):
    if isinstance(value, str):
        return True
    if isinstance(value, (list, tuple, np.ndarray)) and len(value):
        return isinstance(np.asarray(value).reshape(-1)[0], (str, bytes))
    return False


def describe(value):
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)}"
    if isinstance(value, (list, tuple)) and value:
        kinds = sorted({type(item).__name__ for item in value})
        return f"a {type(value).__name__} of {', '.join(kinds)}"
    return f"a {type(value).__name__}"
