"""Safe loading: `load_model` for `.keras` files, and the checks it shares
with `keras_3t.presets.load` (Python code in a config, a newer keras-3t).

Keras's safe mode already refuses to rebuild a `lambda` from a saved config;
these checks refuse it before anything is built, with an error that names the
file and the layers, and turn Keras's errors for damaged files into ones that
say what is wrong.
"""

import json
import os
import zipfile

import h5py
import keras
from keras.src.saving import serialization_lib
from packaging.version import InvalidVersion
from packaging.version import Version

from keras_3t.version import __version__

# The keras-3t version in a ThreeTowerModel's config and a preset's metadata.
VERSION_KEY = "keras_3t_version"
# Keras's marker for a Python `lambda` serialized as bytecode.
LAMBDA_CLASS_NAME = "__lambda__"
# The weights inside a `.keras` archive.
WEIGHTS_MEMBER = "model.weights.h5"


def current_version():
    """This keras-3t's version (`keras_3t.version.__version__`)."""
    return __version__


def check_version(saved, source):
    """Refuses what a newer keras-3t wrote; this one may not build it right.

    Args:
        saved: the version recorded with the model, or None (files written
            before keras-3t recorded it, which are accepted).
        source: words naming where the version was read, for the error.
    """
    if saved is None:
        return
    current = current_version()
    try:
        newer = Version(str(saved)) > Version(current)
    except InvalidVersion:
        raise ValueError(
            f"{source} records keras-3t version {saved!r}, which is not a "
            "version number: the file is damaged."
        ) from None
    if newer:
        raise ValueError(
            f"{source} was saved by keras-3t {saved}; this is keras-3t "
            f"{current}, which may not rebuild it correctly. Upgrade keras-3t "
            f"to {saved} or later to load it."
        )


def effective_safe_mode(safe_mode):
    """The safe mode Keras applies: an enclosing `SafeModeScope`, or
    `keras.config.enable_unsafe_deserialization()`, wins over the argument."""
    scoped = serialization_lib.in_safe_mode()
    return safe_mode if scoped is None else scoped


def safe_mode_scope(safe_mode):
    """A context in which Keras deserializes with `safe_mode` (as Keras would)."""
    return serialization_lib.SafeModeScope(effective_safe_mode(safe_mode))


def check_no_code(config, source, safe_mode):
    """In safe mode, refuses a serialized config that carries Python code.

    Args:
        config: a serialized Keras object (e.g. a parsed `config.json`).
        source: the file it was read from, for the error.
        safe_mode: bool. False accepts the code (for files you trust).
    """
    if not effective_safe_mode(safe_mode):
        return
    holders = sorted(set(_code_holders(config, owner="the model")))
    if holders:
        raise ValueError(
            f"{source} contains Python code (a `lambda`, in {', '.join(holders)}), "
            "which loading would run. It is refused in safe mode, the default. "
            "If you trust where the file came from, load it with safe_mode=False."
        )


def _code_holders(config, owner):
    """The layers of a serialized config holding a serialized `lambda`."""
    if isinstance(config, list):
        return [name for value in config for name in _code_holders(value, owner)]
    if not isinstance(config, dict):
        return []
    if config.get("class_name") == LAMBDA_CLASS_NAME:
        return [owner]
    inner = config.get("config")
    if "class_name" in config and isinstance(inner, dict) and "name" in inner:
        owner = f"{config['class_name']} {inner['name']!r}"
    return [name for value in config.values() for name in _code_holders(value, owner)]


def stored_shapes(file):
    """The sorted shapes of the arrays in a Keras HDF5 weights file.

    Args:
        file: a path, or an open binary file (a `.keras` archive's member).
    """
    shapes = []
    with h5py.File(file, "r") as weights:
        weights.visititems(
            lambda name, item: (
                shapes.append(tuple(item.shape))
                if isinstance(item, h5py.Dataset) and not name.startswith("optimizer/")
                else None
            )
        )
    return sorted(shapes)


def shape_mismatch(stored, expected, stored_in="the file", expected_in="the model"):
    """How arrays of `stored` shapes fail to match `expected` ones, or None.

    Both are lists of shapes in any order (e.g. `stored_shapes(file)` and
    `[v.shape for v in model.weights]`). Keras loads by layer path and
    ignores arrays no layer asks for, so a model with fewer layers than its
    weights file loads without complaint: this comparison catches it.

    Args:
        stored: shapes of the saved arrays.
        expected: shapes of the arrays that should load them.
        stored_in: what holds `stored`, for the message.
        expected_in: what holds `expected`, for the message.
    """
    stored = sorted(tuple(shape) for shape in stored)
    expected = sorted(tuple(shape) for shape in expected)
    if stored == expected:
        return None
    mismatch = f"{stored_in} holds {len(stored)} arrays, {expected_in} has {len(expected)}"
    only_stored = sorted(set(stored) - set(expected))
    only_expected = sorted(set(expected) - set(stored))
    if only_stored or only_expected:
        mismatch += (
            f"; shapes only in {stored_in}: {only_stored[:3]}, only in "
            f"{expected_in}: {only_expected[:3]}"
        )
    return mismatch


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """`keras.saving.load_model` for `.keras` files, with errors that say why.

    Keras reports a truncated or corrupt `.keras` file as "File not found";
    this names the damage. It also refuses, before building anything, a file
    written by a newer keras-3t and (in safe mode) one carrying Python code.

    Args:
        filepath: a `.keras` file (e.g. from `model.save("model.keras")`).
        custom_objects: passed to `keras.saving.load_model`.
        compile: bool. Restore the optimizer and compile state.
        safe_mode: bool. Refuse files carrying Python code (a `Lambda`
            layer's function); pass False only for files you trust.
    """
    filepath = os.fspath(filepath)
    if os.path.isdir(filepath):
        raise ValueError(
            f"{filepath} is a folder; load a preset folder with keras_3t.presets.load(folder)."
        )
    if not filepath.endswith(".keras"):
        raise ValueError(f"{filepath} is not a .keras file (written by model.save).")
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"There is no .keras file at {filepath}.")
    try:
        with zipfile.ZipFile(filepath) as archive:
            damaged = archive.testzip()  # reads every member, checking its CRC
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError) as error:
        # ValueError includes json's and UTF-8 decoding errors.
        raise ValueError(
            f"{filepath} is corrupt or truncated: not a readable .keras archive ({error})."
        ) from None
    if damaged:
        raise ValueError(f"{filepath} is corrupt: its {damaged} fails its checksum.")
    if isinstance(config, dict) and isinstance(config.get("config"), dict):
        check_version(config["config"].get(VERSION_KEY), filepath)
    check_no_code(config, filepath, safe_mode)
    try:
        model = keras.saving.load_model(
            filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
        with zipfile.ZipFile(filepath) as archive, archive.open(WEIGHTS_MEMBER) as weights:
            mismatch = shape_mismatch(stored_shapes(weights), [v.shape for v in model.weights])
    except OSError as error:  # h5py: the weights inside cannot be read
        raise ValueError(
            f"{filepath} is corrupt: its weights are not a readable HDF5 file ({error})."
        ) from error
    except (ValueError, KeyError) as error:
        # Past the checks above, what fails is rebuilding the config or
        # fitting the weights to it.
        raise ValueError(
            f"Could not load {filepath}: its config could not be rebuilt, or "
            f"its weights do not fit that config. Keras said: {error}"
        ) from error
    if mismatch:
        raise ValueError(
            f"Could not load {filepath}: its weights do not fit its config ({mismatch})."
        )
    return model
