"""A model's preset folder: `save_to_preset` writes it, `load_preset_dir` reads it.

The layout follows keras-hub's: `config.json` (the model, without its
preprocessor), `model.weights.h5` (every weight, the frozen towers' included),
`preprocessor.json`, `tokenizer.json` and `assets/tokenizer/` (when the model
has a preprocessor), and `metadata.json` (versions, parameter counts, and
whatever the caller adds, e.g. the command that trained it).
"""

import datetime
import json
import os

import keras
import keras_hub
import numpy as np
from keras.src.saving import saving_lib

from keras_3t.atomic_files import check_replaceable
from keras_3t.atomic_files import staged_folder
from keras_3t.saving import VERSION_KEY
from keras_3t.saving import shape_mismatch
from keras_3t.saving import stored_shapes
from keras_3t.version import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
PREPROCESSOR_FILE = "preprocessor.json"
METADATA_FILE = "metadata.json"


def parameter_counts(model):
    """Parameters per tower, in total, and trainable, of a `ThreeTowerModel`."""
    counts = {
        "image_tower": model.image_tower.count_params(),
        "text_tower": model.text_tower.count_params(),
    }
    if model.third_tower is not None:
        counts["third_tower"] = model.third_tower.count_params()
    elif model.third_towers:
        counts.update(
            (f"third_tower_{name}", tower.count_params())
            for name, tower in model.third_towers.items()
        )
    counts["total"] = model.count_params()
    counts["trainable"] = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    return counts


def _strip_build_state(config):
    """Drops compile and build state from a serialized config, at every depth."""
    if isinstance(config, dict):
        for key in ("compile_config", "build_config"):
            config.pop(key, None)
        for value in config.values():
            _strip_build_state(value)
    return config


def save_to_preset(model, preset_dir, overwrite=False, metadata=None):
    """Writes `model` to `preset_dir`; see `ThreeTowerModel.save_to_preset`."""
    check_replaceable(preset_dir, overwrite)
    # Written next to the target, then moved in one rename: a failed save
    # leaves any earlier preset as it was.
    with staged_folder(preset_dir, ".saving-") as staging:
        config = _strip_build_state(keras.saving.serialize_keras_object(model))
        config["config"]["preprocessor"] = None
        _write_json(os.path.join(staging, CONFIG_FILE), config)
        # The model's weights only: a preset carries no optimizer state.
        saving_lib.save_weights_only(
            model,
            os.path.join(staging, WEIGHTS_FILE),
            # An uncompiled model has no `optimizer` attribute at all.
            objects_to_skip=[model.optimizer] if getattr(model, "optimizer", None) else None,
        )
        if model.preprocessor is not None:
            model.preprocessor.save_to_preset(staging)
        _write_json(
            os.path.join(staging, METADATA_FILE),
            {
                VERSION_KEY: __version__,
                "keras_version": keras.version(),
                "keras_hub_version": keras_hub.__version__,
                "backend": keras.backend.backend(),
                "objective": model.objective,
                "parameter_count": parameter_counts(model),
                "date_saved": datetime.datetime.now().isoformat(timespec="seconds"),
                **(metadata or {}),
            },
        )
    return preset_dir


def is_preset_dir(path):
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def read_config(preset_dir):
    """The model config of a preset folder, checked to be a ThreeTowerModel."""
    path = os.path.join(preset_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{preset_dir} is not a keras-3t preset: it has no {CONFIG_FILE} "
            "(write one with ThreeTowerModel.save_to_preset)."
        )
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt: not valid JSON ({error}).") from None
    if not isinstance(config, dict) or config.get("class_name") != "ThreeTowerModel":
        found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ValueError(
            f"{path} describes a {found!r}, not a keras-3t ThreeTowerModel. "
            "For a keras-hub backbone preset, pass it as third_tower= instead."
        )
    return config


def read_metadata(preset_dir):
    """The metadata of a preset folder, or `{}` if it has none."""
    path = os.path.join(preset_dir, METADATA_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            metadata = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt: not valid JSON ({error}).") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} is corrupt: it holds a {type(metadata).__name__}, not a dict.")
    return metadata


def read_preprocessor(preset_dir, safe_mode=True):
    """The preprocessor saved in a preset folder, or None if it has none.

    Args:
        preset_dir: the folder.
        safe_mode: bool. Keras's safe mode for `preprocessor.json` (its
            vocabulary, an asset of the folder, is read after, outside it).
    """
    path = os.path.join(preset_dir, PREPROCESSOR_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            preprocessor = keras.saving.deserialize_keras_object(
                json.load(file), safe_mode=safe_mode
            )
        preprocessor.load_preset_assets(preset_dir)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"Could not restore the tokenizer saved in {preset_dir} "
            f"({PREPROCESSOR_FILE} and assets/tokenizer/): {error}"
        ) from None
    return preprocessor


def load_weights(model, preset_dir, built_from):
    """Loads `preset_dir`'s weights file into `model`, with errors that say why.

    Args:
        model: the `ThreeTowerModel` built from the matching config.
        preset_dir: the folder holding `model.weights.h5`.
        built_from: words naming where the model's config came from.
    """
    path = os.path.join(preset_dir, WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{preset_dir} has no weights file ({WEIGHTS_FILE}). Pass "
            "weights=False to build the architecture with fresh weights."
        )
    try:
        stored = stored_shapes(path)
    except OSError as error:
        raise ValueError(
            f"{path} is corrupt: not a readable HDF5 weights file ({error})."
        ) from None
    mismatch = shape_mismatch(stored, [v.shape for v in model.weights])
    if mismatch:
        raise ValueError(
            f"The weights in {path} do not fit the model built from "
            f"{built_from}: the config and the weights file disagree ({mismatch})."
        )
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(
            f"The weights in {path} do not fit the model built from "
            f"{built_from}: the config and the weights file disagree. "
            f"Keras said: {error}"
        ) from None


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2)
        file.write("\n")
