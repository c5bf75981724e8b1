"""The presets and third towers that ship inside the package."""

import importlib.resources
import os

# Registry paths starting with this name folders of the shipped presets.
SAVED_MODELS_PREFIX = "saved_models/"


def saved_models_dir():
    """The folder holding the shipped presets and third towers.

    The repository's `saved_models/`, installed (from a wheel or as an
    editable checkout) as the package data `keras_3t.saved_models`.

    Example:
    >>> import os
    >>> from keras_3t.saving.shipped import saved_models_dir
    >>> os.path.isdir(os.path.join(saved_models_dir(), "3t_tiny"))
    True
    """
    return str(importlib.resources.files("keras_3t.saved_models"))


def shipped_path(path):
    """The folder a registry path `saved_models/<name>` names, else None."""
    if path.startswith(SAVED_MODELS_PREFIX):
        return os.path.join(saved_models_dir(), path[len(SAVED_MODELS_PREFIX) :])
    return None
