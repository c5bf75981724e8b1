"""Loads a model from a registered preset name or a preset folder.

A model class registers its presets (plain dicts, see
`keras_3t/model/three_tower_presets.py`) into its `presets` attribute with
`register_presets`; `load_preset(model_class, ...)` builds one, or reads a
folder written by `save_to_preset`. Nothing here imports a model, so a
model may call into this module without an import cycle.
"""

import difflib
import os

import keras
import keras_hub

from keras_3t.preprocessing import ThreeTowerPreprocessor
from keras_3t.saving import VERSION_KEY
from keras_3t.saving import check_no_code
from keras_3t.saving import check_version
from keras_3t.saving import preset_dir
from keras_3t.saving import safe_mode_scope
from keras_3t.saving.shipped import SAVED_MODELS_PREFIX
from keras_3t.saving.shipped import shipped_path
from keras_3t.towers import ImageTower
from keras_3t.towers import TextTower
from keras_3t.towers import ThirdTower
from keras_3t.towers.keras_hub_presets import WeightsUnavailableError
from keras_3t.towers.keras_hub_presets import load_backbone
from keras_3t.towers.keras_hub_presets import load_image_converter

SHIPPED = "the package data keras_3t.saved_models"
MODEL_OVERRIDES = (
    "loss",
    "pair_weights",
    "shared_logit_scale",
    "logit_scale_init",
    "logit_scale_max",
    "logit_bias_init",
    "adaptor_input",
    "local_loss",
)
TOWER_OVERRIDES = ("image_tower", "text_tower")
# ThirdTower arguments (3T presets only).
THIRD_TOWER_OVERRIDES = ("shared_head",)


def register_presets(presets, model_class):
    """Adds `presets` (name -> preset dict) to `model_class.presets`."""
    for name, preset in presets.items():
        if name in model_class.presets:
            raise ValueError(f"Preset {name!r} is registered already.")
        model_class.presets[name] = preset


def describe_preset(presets, name):
    """A few lines on a registered preset: what it is, its towers, its sizes."""
    preset = registered_preset(presets, name)
    lines = [f"{name} (objective {preset['objective']!r})", preset["description"]]
    for role in ("image_tower", "third_tower"):
        tower = preset[role]
        if tower is None:
            continue
        class_name, config = tower["backbone"]
        source = f"pretrained: {tower['preset']}" if "preset" in tower else "from scratch"
        frozen = ", frozen" if tower.get("frozen") or role == "third_tower" else ""
        lines.append(
            f"  {role}: {class_name} {config['image_shape'][0]} px ({source}{frozen}), "
            f"embedding {tower['embedding_dim']}"
        )
    text = preset["text_tower"]
    lines.append(
        f"  text_tower: {text['num_layers']} layers × {text['hidden_dim']} wide, "
        f"vocabulary {text['vocabulary_size']}, {text['sequence_length']} tokens"
    )
    counts = preset["parameter_count"] or {}
    if counts:
        lines.append(
            "  parameters: "
            + ", ".join(f"{key} {value / 1e6:.2f} M" for key, value in counts.items())
        )
    lines.append(f"  trained weights: {preset['weights'] or 'none'}")
    return "\n".join(lines)


def load_preset(
    model_class,
    name_or_path,
    weights=True,
    third_tower=None,
    third_tower_weights=True,
    preprocessor=True,
    safe_mode=True,
    **overrides,
):
    """A compiled `model_class` from one of its presets or a preset folder.

    `keras_3t.presets.load` documents the arguments.
    """
    accepted = MODEL_OVERRIDES + TOWER_OVERRIDES + THIRD_TOWER_OVERRIDES
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(f"Unknown override(s) {unknown}; load() accepts {list(accepted)}.")
    if isinstance(name_or_path, str) and name_or_path in model_class.presets:
        model = _load_registered(
            model_class,
            name_or_path,
            weights,
            third_tower,
            third_tower_weights,
            preprocessor,
            overrides,
        )
    elif isinstance(name_or_path, (str, os.PathLike)) and os.path.isdir(name_or_path):
        model = _load_folder(
            model_class,
            os.fspath(name_or_path),
            weights,
            third_tower,
            preprocessor,
            overrides,
            safe_mode,
        )
    else:
        registered_preset(model_class.presets, name_or_path)  # raises
    model.compile()
    return model


def registered_preset(presets, name):
    """The preset registered as `name`; if none, an error listing the presets
    and naming the closest, where one is close (difflib's default cutoff)."""
    if name in presets:
        return presets[name]
    names = sorted(presets)
    closest = difflib.get_close_matches(str(name), names, n=1)
    suggestion = f"Did you mean {closest[0]!r}? " if closest else ""
    raise ValueError(
        f"Unknown preset {name!r} (and no preset folder at that path). "
        f"{suggestion}Known presets: {', '.join(names)}."
    )


def _load_registered(
    model_class, name, weights, third_tower, third_tower_weights, preprocessor, overrides
):
    preset = model_class.presets[name]
    trained = preset["weights"] if weights else None
    if trained and third_tower is not None:
        raise ValueError(
            f"{name}'s trained weights belong to its own pretrained tower; "
            "to swap in another, pass weights=False (fresh main towers)."
        )
    if preset["objective"] == "clip" and third_tower is not None:
        raise ValueError(f"{name} is a CLIP model: it has no third tower to replace.")
    if preset["objective"] != "3t" and "shared_head" in overrides:
        raise ValueError(
            f"shared_head configures 3T's third tower; {name} is a {preset['objective']} model."
        )
    trained_dir = shipped_path(trained) if trained else None
    if trained_dir and not preset_dir.is_preset_dir(trained_dir):
        raise WeightsUnavailableError(
            f"The trained weights of {name!r} are not at {trained_dir}. They ship "
            f"inside keras-3t ({SHIPPED}), which this installation lacks: "
            "reinstall keras-3t; or pass weights=False for fresh weights."
        )
    tower_configs = {
        role: dict(preset[role] or {}, **overrides.get(role, {}))
        for role in ("image_tower", "third_tower")
    }
    text_config = dict(preset["text_tower"], **overrides.get("text_tower", {}))
    # Resolved first: a tokenizer that cannot be fetched fails before any
    # tower is built.
    preprocessor = _registered_preprocessor(name, preset, preprocessor, trained_dir)
    # With trained weights every tower comes from the weights file; nothing
    # pretrained is fetched.
    fetch = third_tower_weights and not trained_dir
    pretrained = None
    role = "image_tower" if preset["objective"] == "lit" else "third_tower"
    if preset["objective"] != "clip":
        pretrained = _pretrained_backbone(tower_configs[role], third_tower, fetch)
    image_config = tower_configs["image_tower"]
    image_tower = ImageTower(
        pretrained if role == "image_tower" else _backbone(image_config),
        image_config["embedding_dim"],
        frozen=image_config.get("frozen", False),
        image_converter=_converter(image_config, third_tower),
    )
    third = None
    if preset["objective"] == "3t":
        third_config = tower_configs["third_tower"]
        third = ThirdTower(
            pretrained,
            third_config["embedding_dim"],
            shared_head=overrides.get("shared_head", False),
            image_converter=_converter(third_config, third_tower),
        )
    model = model_class(
        image_tower=image_tower,
        text_tower=TextTower(**text_config),
        third_tower=third,
        objective=preset["objective"],
        preprocessor=preprocessor,
        **{key: value for key, value in overrides.items() if key in MODEL_OVERRIDES},
    )
    if trained_dir:
        preset_dir.load_weights(model, trained_dir, f"the registered config of {name!r}")
    return model


def _backbone(tower_config):
    class_name, config = tower_config["backbone"]
    return getattr(keras_hub.models, class_name)(**config)


def _converter(tower_config, replacement):
    """The tower's image converter; a swapped-in tower brings its own."""
    if replacement is not None and "preset" in tower_config:
        # A Keras model takes the model's images as they are.
        return load_image_converter(replacement) if isinstance(replacement, str) else None
    if tower_config.get("image_converter") is None:
        return None
    return keras.layers.Rescaling(**tower_config["image_converter"])


def _pretrained_backbone(tower_config, replacement, fetch):
    """The frozen pretrained backbone: the preset's, or the replacement."""
    if replacement is not None and not isinstance(replacement, str):
        if not isinstance(replacement, keras.Model):
            raise ValueError(
                "third_tower must be a keras-hub preset name, a preset folder "
                f"or a Keras model; got a {type(replacement).__name__}."
            )
        return getattr(replacement, "vision_encoder", replacement)
    source = replacement or tower_config["preset"]
    local = shipped_path(source) or source
    if not fetch:
        if replacement is None:
            return _backbone(tower_config)
        return _fetch(source, local, load_weights=False)
    return _fetch(source, local, load_weights=True)


def _fetch(source, local, load_weights):
    if source.startswith(SAVED_MODELS_PREFIX) and not os.path.isdir(local):
        raise WeightsUnavailableError(
            f"The pretrained tower {source!r} is not at {local}: it ships "
            f"inside keras-3t ({SHIPPED}), which this installation lacks: "
            "reinstall keras-3t, or pass third_tower_weights=False to build it "
            "with fresh weights."
        )
    try:
        return load_backbone(local, load_weights=load_weights)
    except WeightsUnavailableError as error:
        raise WeightsUnavailableError(
            f"{error} Here, pass the folder as third_tower=; or pass "
            "third_tower_weights=False to build the architecture with fresh "
            "weights (and no download)."
        ) from None


def _registered_preprocessor(name, preset, preprocessor, trained_dir):
    if preprocessor is not True:
        return preprocessor or None
    spec = preset["preprocessor"]
    if spec == "saved":
        folder = trained_dir or shipped_path(preset["weights"])
        if not preset_dir.is_preset_dir(folder):
            raise WeightsUnavailableError(
                f"The tokenizer of {name!r} ships in {folder}, which is missing "
                f"from this installation ({SHIPPED}): reinstall keras-3t, or "
                "pass preprocessor=False."
            )
        return preset_dir.read_preprocessor(folder)
    try:
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(spec["tokenizer_preset"])
    except OSError as error:
        raise WeightsUnavailableError(
            f"Could not fetch the keras-hub tokenizer preset "
            f"{spec['tokenizer_preset']!r} for {name!r} ({error.__class__.__name__}: "
            f"{error}). Pass preprocessor=False, or preprocessor="
            "ThreeTowerPreprocessor(tokenizer, sequence_length) with a local tokenizer."
        ) from None
    return ThreeTowerPreprocessor(tokenizer, spec["sequence_length"])


def _load_folder(model_class, path, weights, third_tower, preprocessor, overrides, safe_mode):
    if third_tower is not None:
        raise ValueError(
            "A saved model's third tower is part of its trained weights; "
            "swap third towers on a registered configuration instead."
        )
    tower_overrides = sorted(set(overrides) & set(TOWER_OVERRIDES + THIRD_TOWER_OVERRIDES))
    if tower_overrides:
        raise ValueError(
            f"{tower_overrides} can only override a registered preset's towers, "
            f"not a saved folder's ({path})."
        )
    # Both checked before anything is built.
    metadata = preset_dir.read_metadata(path)
    check_version(metadata.get(VERSION_KEY), os.path.join(path, preset_dir.METADATA_FILE))
    config = preset_dir.read_config(path)
    check_no_code(config, os.path.join(path, preset_dir.CONFIG_FILE), safe_mode)
    model_config = dict(config["config"], **overrides)
    if preprocessor is True:
        preprocessor = preset_dir.read_preprocessor(path, safe_mode)
    model_config["preprocessor"] = preprocessor or None
    try:
        # from_config is called directly, so the scope that Keras's loaders
        # set up is set here: every layer inside is deserialized under it.
        with safe_mode_scope(safe_mode):
            model = model_class.from_config(model_config)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(
            f"{os.path.join(path, preset_dir.CONFIG_FILE)} does not describe a "
            f"model this version of keras-3t can build: {error}"
        ) from None
    if weights:
        preset_dir.load_weights(model, path, os.path.join(path, preset_dir.CONFIG_FILE))
    return model
