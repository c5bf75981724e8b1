"""The checks of `ThreeTowerModel`'s arguments and inputs.

Each raises a ValueError (or TypeError) that names the problem and the fix;
the model calls them before any tower runs.
"""

import numbers

import keras
import numpy as np
from keras import ops

from keras_3t.distributed import check_replica_batches
from keras_3t.image_converter import check_value_range
from keras_3t.training.errors import BATCH_TOO_SMALL
from keras_3t.training.errors import assert_batch_size_at_least_two

OBJECTIVES = ("3t", "lit", "clip")
LOSSES = ("softmax", "sigmoid")
ADAPTOR_INPUTS = ("pooled", "embedding")
BATCH_KEYS = ("images", "token_ids", "padding_mask")


def check_alpha(model, alpha):
    """alpha as a Python float; NumPy scalars are numbers too."""
    if isinstance(alpha, np.ndarray) and alpha.ndim == 0:
        alpha = alpha.item()
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}.")
    alpha = float(alpha)
    if alpha < 1.0 and model.objective != "3t":
        raise ValueError(
            f"alpha < 1 combines the main towers with the third tower, "
            f"which only a '3t' model has; this model's objective is "
            f"{model.objective!r}, so alpha must be 1 (got {alpha})."
        )
    return alpha


def image_batch(model, images):
    """Images as the towers take them, through `image_converter` if needed."""
    if isinstance(images, dict):
        raise TypeError(
            f"encode_image takes images, not {describe(images)}: pass the "
            "batch's images (e.g. batch['images'])."
        )
    if isinstance(images, (str, bytes, list, tuple)) or not hasattr(images, "shape"):
        return ops.convert_to_numpy(model.image_converter(images))
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
    if len(shape) != 4:
        raise ValueError(
            "images must be a float batch of shape (batch, height, width, "
            f"channels); got rank {len(shape)}, shape {shape}."
        )
    image_towers = [model.image_tower]
    if model.third_tower is not None:
        image_towers.append(model.third_tower)
    for tower in image_towers:
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
    keys = BATCH_KEYS
    if "third_features" in batch:
        check_third_features(model, batch["third_features"])
        keys += ("third_features",)
    batch_sizes = {batch[key].shape[0] for key in keys if batch[key].shape[0] is not None}
    if len(batch_sizes) > 1:
        raise ValueError(
            f"The batch's {', '.join(keys)} have different batch sizes: {sorted(batch_sizes)}."
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
    shape = tuple(features.shape)
    expected = model.third_tower.feature_dim
    if len(shape) != 2 or shape[1] != expected:
        raise ValueError(
            f"third_features must have shape (batch, {expected}) (the third "
            f"tower's pooled features); got {shape}. Was the cache written "
            "with another third tower?"
        )


def check_arguments(
    image_tower, text_tower, third_tower, objective, loss, pair_weights, adaptor_input
):
    """Raises on `ThreeTowerModel` arguments that do not fit together."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")
    if adaptor_input not in ADAPTOR_INPUTS:
        raise ValueError(f"adaptor_input must be one of {ADAPTOR_INPUTS}; got {adaptor_input!r}.")
    if objective == "3t" and third_tower is None:
        raise ValueError("objective='3t' needs a third_tower (a frozen ThirdTower).")
    if objective != "3t" and third_tower is not None:
        raise ValueError(
            f"objective={objective!r} uses no third tower; got third_tower="
            f"{third_tower.name!r}. Use objective='3t' to train with it."
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
    weights = tuple(pair_weights)
    if len(weights) != 3 or any(w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError(
            "pair_weights must be three non-negative weights (image-text, "
            f"image-third, text-third), not all zero; got {pair_weights!r}."
        )


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
