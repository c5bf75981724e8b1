"""The α-combination: one embedding from the main path and the frozen towers' paths.

A 3T model scores an image-text pair along several paths: the main towers,
⟨f(x), g(t)⟩, and each frozen tower's, ⟨h_g(x), g_h(t)⟩ (docs/method.md).
Given non-negative weights w_p over the paths that sum to 1, an image
embeds as `[√w_p · image_p for each path p]` and a text as
`[√w_p · text_p ...]`, so their dot product is Σ_p w_p ⟨image_p, text_p⟩:
the weighted sum of the paths' scores, with no change to a retrieval or
classification routine. With one frozen tower and weights (α, 1 − α) this
is the paper's convex combination; more towers are our extension.
"""

import numbers

import numpy as np

MAIN_PATH = "main"


def path_weights(path_names, alpha):
    """The weight of each path, from α or from explicit weights.

    Args:
        path_names: the model's paths, `"main"` first (`model.path_names`).
        alpha: a number in [0, 1], the main path's weight, the rest shared
            equally by the frozen towers' paths; or a dict of weights by path
            name (a path left out weighs 0) that sum to 1.

    Returns:
        A dict path name → float weight, in `path_names` order.

    Example:
    >>> path_weights(("main", "digits", "thickness"), 0.5)
    {'main': 0.5, 'digits': 0.25, 'thickness': 0.25}
    """
    if isinstance(alpha, dict):
        unknown = sorted(set(alpha) - set(path_names))
        if unknown:
            raise ValueError(
                f"alpha names unknown path(s) {unknown}; this model's paths are {list(path_names)}."
            )
        weights = {name: _real(alpha.get(name, 0.0)) for name in path_names}
        if None in weights.values():
            raise ValueError(f"alpha's path weights must be numbers; got {alpha!r}.")
        if any(w < 0 for w in weights.values()) or not np.isclose(sum(weights.values()), 1.0):
            raise ValueError(
                f"alpha's path weights must be non-negative and sum to 1; got {alpha!r}."
            )
    else:
        main = _real(alpha)
        if main is None or not 0.0 <= main <= 1.0:
            raise ValueError(
                f"alpha must be a number in [0, 1] (or a dict of weights by path); got {alpha!r}."
            )
        towers = path_names[1:]
        weights = {MAIN_PATH: main, **{name: (1.0 - main) / len(towers) for name in towers}}
    if weights[MAIN_PATH] < 1.0 and len(path_names) == 1:
        raise ValueError(
            "alpha < 1 combines the main towers with a frozen third tower, "
            f"which only a '3t' model has; alpha must be 1 (got {alpha!r})."
        )
    return weights


def paths_needed(weights):
    """The paths `combine_paths` reads: the main one alone at weight 1."""
    return (MAIN_PATH,) if weights[MAIN_PATH] == 1.0 else tuple(weights)


def combine_paths(paths, weights):
    """`[√w_p · paths[p] for each path p]`; the main path alone at weight 1.

    Args:
        paths: dict path name → `(N, d_p)` L2-normalised embeddings (NumPy).
        weights: dict path name → weight, as `path_weights` returns.

    Returns:
        A float32 NumPy array `(N, Σ d_p)`, or `(N, d_main)` when the main
        path's weight is 1.
    """
    if weights[MAIN_PATH] == 1.0:
        return np.asarray(paths[MAIN_PATH])
    return np.concatenate(
        [np.float32(np.sqrt(weight)) * np.asarray(paths[name]) for name, weight in weights.items()],
        axis=-1,
    )


def _real(value):
    """`value` as a float (NumPy scalars included), or None if not a number."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)
