"""Input checks shared by the evaluation functions."""

import numbers

import numpy as np


def check_alpha(alpha):
    """Raises unless `alpha` is a real number in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}.")


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
