"""keras-3t: Three Towers (3T) contrastive image-text learning for Keras 3.

Names load on first use, so `import keras_3t` costs nothing until they are
needed, and the command line can quiet TensorFlow's logging before
TensorFlow loads. `keras_3t.tuning` (KerasTuner) and the embedded demo
(`keras_3t.demo`: the main job, its models and data) load only when asked
for.

Example:
>>> import keras_3t
>>> keras_3t.ThreeTowerModel.__name__
'ThreeTowerModel'
"""

import importlib

from keras_3t.console import quiet_tensorflow_start
from keras_3t.version import __version__

# TensorFlow's start-up lines, wherever it first loads (keras_3t.console).
quiet_tensorflow_start()

# Public name -> the module that defines it.
_NAMES = {
    "EmbeddedCollection": "keras_3t.collection",
    "ImageConverter": "keras_3t.image_converter",
    "ImageTower": "keras_3t.towers",
    "TextTower": "keras_3t.towers",
    "ThirdTower": "keras_3t.towers",
    "ThreeTowerHyperModel": "keras_3t.tuning",
    "ThreeTowerModel": "keras_3t.model",
    "ThreeTowerPreprocessor": "keras_3t.preprocessing",
    "TrainingCheckpoint": "keras_3t.checkpoint",
    "contrastive_loss": "keras_3t.losses",
    "embed_collection": "keras_3t.collection",
    "read_collection": "keras_3t.collection",
    "search_collection": "keras_3t.collection",
    "sigmoid_contrastive_loss": "keras_3t.losses",
}
_SUBMODULES = (
    "callbacks",
    "checkpoint",
    "collection",
    "combination",
    "data",
    "demo",
    "evaluation",
    "export",
    "image_converter",
    "losses",
    "objective_metrics",
    "optimization",
    "preprocessing",
    "presets",
    "saving",
    "towers",
    "tuning",
    "vocabulary",
)

__all__ = sorted(_NAMES) + list(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"keras_3t.{name}")
    else:
        raise AttributeError(f"module 'keras_3t' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
