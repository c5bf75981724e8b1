"""The presets that ship with keras-3t, installed as `keras_3t.saved_models`.

Found through `importlib.resources` (`keras_3t.presets.saved_models_dir()`),
so they load the same from a clone, an editable install or a wheel.
"""
