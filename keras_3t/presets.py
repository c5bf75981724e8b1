"""Named configurations and saved models: `keras_3t.presets.load("3t_tiny")`.

The presets themselves are plain data in `keras_3t/model/three_tower_presets.py`,
registered into `ThreeTowerModel.presets`; the loading code is in
`keras_3t.saving.preset_loader`.
"""

from keras_3t.model import ThreeTowerModel
from keras_3t.saving.preset_dir import parameter_counts  # noqa: F401
from keras_3t.saving.preset_dir import save_to_preset  # noqa: F401
from keras_3t.saving.preset_loader import WeightsUnavailableError  # noqa: F401
from keras_3t.saving.preset_loader import describe_preset
from keras_3t.saving.preset_loader import load_preset
from keras_3t.saving.shipped import saved_models_dir  # noqa: F401

PRESETS = ThreeTowerModel.presets


def names():
    """The registered preset names, sorted.

    Example:
    >>> import keras_3t
    >>> [name for name in keras_3t.presets.names() if name.endswith("tiny")]
    ['3t_tiny', 'clip_tiny', 'lit_tiny']
    """
    return sorted(PRESETS)


def describe(name):
    """A few lines on a registered preset: what it is, its towers, its sizes.

    Example:
    >>> import keras_3t
    >>> print(keras_3t.presets.describe("3t_vitb16").splitlines()[0])
    3t_vitb16 (objective '3t')
    """
    return describe_preset(PRESETS, name)


def load(
    name_or_path,
    weights=True,
    third_tower=None,
    third_tower_weights=True,
    preprocessor=True,
    safe_mode=True,
    **overrides,
):
    """A compiled `ThreeTowerModel` from a preset name or a preset folder.

    Args:
        name_or_path: a registered name (`keras_3t.presets.names()`) or a
            folder written by `ThreeTowerModel.save_to_preset`.
        weights: bool. Load the preset's trained weights (the `*_tiny`
            presets and saved folders have them; the large presets are
            configurations to train, so their main towers always start
            fresh). False builds the same architecture with fresh weights.
        third_tower: replaces the pretrained tower (3T's third tower, LiT's
            image tower): a keras-hub image backbone preset name, a local
            keras-hub preset folder, or a Keras image model. Not with trained
            weights, which belong to the preset's own tower.
        third_tower_weights: bool. Fetch the pretrained tower's weights from
            keras-hub (or the shipped folder); False builds it from its
            config with fresh weights and needs no download.
        preprocessor: True for the preset's tokenizer (saved with the
            weights, or a keras-hub tokenizer preset for the large sizes),
            False for none, or a `ThreeTowerPreprocessor` to attach.
        safe_mode: bool. Refuse a saved folder whose config carries Python
            code, such as a `Lambda` layer's function, which loading would
            run (Keras's safe mode). Pass False only for folders you trust.
        **overrides: `ThreeTowerModel` arguments (`loss`, `pair_weights`,
            `shared_logit_scale`, `logit_scale_init`, `logit_scale_max`,
            `logit_bias_init`, `adaptor_input`, `local_loss`),
            `shared_head` (3T: one third-tower head for both pairs), or
            `image_tower={...}` / `text_tower={...}` merged into a registered
            tower's arguments.

    Example:
    >>> import numpy as np, keras_3t
    >>> model = keras_3t.presets.load("3t_tiny")
    >>> images = np.zeros((2, 56, 56, 3), "float32")
    >>> tuple(model.encode_image(images).shape)
    (2, 64)
    >>> tuple(model.encode_text(["a 3 above a 7", "a 1"]).shape)
    (2, 64)
    """
    return load_preset(
        ThreeTowerModel,
        name_or_path,
        weights=weights,
        third_tower=third_tower,
        third_tower_weights=third_tower_weights,
        preprocessor=preprocessor,
        safe_mode=safe_mode,
        **overrides,
    )


# `keras_3t.presets.list()`, as keras-hub and open_clip users expect; within
# this module the builtin `list` is not used.
list = names  # noqa: A001
