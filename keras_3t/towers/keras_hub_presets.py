"""A pretrained keras-hub image backbone and its image converter, from a preset.

A preset is a keras-hub preset name (`"resnet_50_imagenet"`), a handle
(`"kaggle://…"`, `"hf://…"`) or a local folder written by
`save_to_preset`. Without network access only a folder loads; the error
for anything else names the handle and how to make a folder of it.
"""

import os

import keras
import keras_hub

# keras-hub's file for a preset's image converter (resize, normalisation).
IMAGE_CONVERTER_FILE = "image_converter.json"


class WeightsUnavailableError(OSError):
    """Pretrained weights (or a tokenizer) could not be fetched or found."""


def load_backbone(preset, load_weights=True):
    """The image backbone of a keras-hub preset.

    A CLIP or SigLIP preset gives its vision encoder.

    Args:
        preset: a keras-hub preset name, a `kaggle://` or `hf://` handle, or
            a local preset folder.
        load_weights: bool. False builds the architecture with fresh weights
            (the config is still read from the preset).
    """
    preset = _check_preset(preset)
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights)
    except Exception as error:
        if os.path.isdir(preset):
            raise ValueError(
                f"{preset} is not a keras-hub backbone preset folder ({error})."
            ) from None
        raise WeightsUnavailableError(_unavailable(preset, error)) from None
    return getattr(backbone, "vision_encoder", backbone)


def load_image_converter(preset):
    """The preset's image converter, rescaled for images in [0, 1]; None if it has none.

    keras-hub converters take pixels in [0, 255] (their `scale` includes
    1/255); keras-3t's batches hold floats in [0, 1], so the scale is
    multiplied by 255. The resize and the normalisation stay the preset's.
    """
    from keras_hub.src.utils.preset_utils import check_file_exists
    from keras_hub.src.utils.preset_utils import load_json

    preset = _check_preset(preset)
    try:
        if not check_file_exists(preset, IMAGE_CONVERTER_FILE):
            return None
        # Read directly, not with ImageConverter.from_preset: that looks up
        # a converter class for the backbone first, and a bare CLIP vision
        # encoder has none.
        converter = keras.saving.deserialize_keras_object(load_json(preset, IMAGE_CONVERTER_FILE))
    except Exception as error:
        raise WeightsUnavailableError(_unavailable(preset, error)) from None
    config = converter.get_config()
    scale = config.get("scale")
    if scale is None:
        config["scale"] = 255.0
    elif isinstance(scale, (list, tuple)):
        config["scale"] = [255.0 * s for s in scale]
    else:
        config["scale"] = 255.0 * scale
    return type(converter).from_config(config)


def _check_preset(preset):
    """`preset` as a string; a ValueError if it cannot be a preset at all."""
    if isinstance(preset, os.PathLike):
        preset = os.fspath(preset)
    if not isinstance(preset, str):
        raise ValueError(
            "A preset is a keras-hub preset name, a kaggle:// or hf:// handle or a "
            f"folder; got a {type(preset).__name__}."
        )
    if "://" in preset or os.path.isdir(preset) or preset in keras_hub.models.Backbone.presets:
        return preset
    raise ValueError(
        f"{preset!r} is neither a keras-hub preset name "
        "(keras_hub.models.Backbone.presets), a kaggle:// or hf:// handle, nor a "
        "folder that exists."
    )


def _unavailable(preset, error):
    return (
        f"Could not fetch the keras-hub preset {preset!r} ({type(error).__name__}: "
        f"{error}). Without network access, save it once where there is "
        f"(keras_hub.models.Backbone.from_preset({preset!r}).save_to_preset(folder), "
        f"and keras_hub.layers.ImageConverter.from_preset({preset!r})"
        ".save_to_preset(folder) for its image converter) and pass that folder."
    )
