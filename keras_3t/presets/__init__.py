"""Named configurations and saved models: `keras_3t.presets.load("3t_tiny")`."""

from keras_3t.presets.loading import WeightsUnavailableError
from keras_3t.presets.loading import describe
from keras_3t.presets.loading import load
from keras_3t.presets.loading import names
from keras_3t.presets.preset_dir import parameter_counts
from keras_3t.presets.preset_dir import save_to_preset
from keras_3t.presets.registry import PRESETS
from keras_3t.presets.registry import saved_models_dir

# `keras_3t.presets.list()`, as keras-hub and open_clip users expect; within
# this package the builtin `list` is not used.
list = names  # noqa: A001
