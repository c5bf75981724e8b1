"""`ThreeTowerModel` and its registered presets."""

from keras_3t.model import three_tower_presets
from keras_3t.model.three_tower_model import ThreeTowerModel
from keras_3t.saving.preset_loader import register_presets

register_presets(three_tower_presets.PRESETS, ThreeTowerModel)
