"""Input checks shared by the evaluation functions."""

import numpy as np

from keras_3t.combination import MAIN_PATH
from keras_3t.combination import path_weights


def model_path_weights(model, alpha):
    """The path weights of `alpha` for `model`; one path for a model without `path_names`."""
    return path_weights(getattr(model, "path_names", (MAIN_PATH,)), alpha)


def check_same_dim(first, second, what):
    """Raises unless two (count, dim) arrays have the same dim."""
    if first.shape[1] != second.shape[1]:
        raise ValueError(
            f"{what} embeddings have different sizes: {first.shape[1]} and {second.shape[1]}."
        )


def positive_integers(values, name):
    """Returns `values` as a tuple; raises unless they are positive integers."""
    values = tuple(values)
    if not values or any(not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ValueError(f"{name} must be positive integers; got {values!r}.")
    return values
