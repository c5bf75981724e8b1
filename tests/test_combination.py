"""keras_3t.combination: path weights, and the combined embeddings' dot product."""

import numpy as np
import pytest

from keras_3t.combination import combine_paths
from keras_3t.combination import path_weights

PATHS = ("main", "digits", "thickness")


def test_alpha_shares_the_rest_equally_and_a_dict_names_each_path():
    assert path_weights(("main", "third"), 0.3) == {"main": 0.3, "third": 0.7}
    assert path_weights(PATHS, 0.4) == pytest.approx({"main": 0.4, "digits": 0.3, "thickness": 0.3})
    assert path_weights(PATHS, {"main": 0.5, "thickness": 0.5}) == {
        "main": 0.5,
        "digits": 0.0,
        "thickness": 0.5,
    }
    assert path_weights(("main",), np.float32(1.0)) == {"main": 1.0}


@pytest.mark.parametrize(
    "alpha,message",
    [
        (1.5, r"alpha must be a number in \[0, 1\]"),
        ("0.5", r"alpha must be a number in \[0, 1\]"),
        ({"main": 0.5}, "sum to 1"),
        ({"main": 1.5, "digits": -0.5}, "non-negative"),
        ({"main": 0.5, "third": 0.5}, r"unknown path\(s\) \['third'\]"),
        ({"main": "1"}, "must be numbers"),
    ],
)
def test_bad_weights_are_refused(alpha, message):
    with pytest.raises(ValueError, match=message):
        path_weights(PATHS, alpha)


def test_a_model_without_frozen_towers_takes_only_alpha_one():
    with pytest.raises(ValueError, match="only a '3t' model has"):
        path_weights(("main",), 0.5)


def test_the_dot_product_is_the_weighted_sum_of_the_paths_scores():
    rng = np.random.default_rng(0)

    def unit(count, dim):
        x = rng.normal(size=(count, dim)).astype("float32")
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    images = {"main": unit(5, 8), "digits": unit(5, 4), "thickness": unit(5, 6)}
    texts = {"main": unit(3, 8), "digits": unit(3, 4), "thickness": unit(3, 6)}
    weights = path_weights(PATHS, {"main": 0.2, "digits": 0.5, "thickness": 0.3})
    combined = combine_paths(images, weights) @ combine_paths(texts, weights).T
    expected = sum(w * images[p] @ texts[p].T for p, w in weights.items())
    np.testing.assert_allclose(combined, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(combine_paths(images, weights), axis=1), 1, atol=1e-6)
    # At weight 1 on the main path, the main embeddings alone.
    np.testing.assert_array_equal(combine_paths(images, path_weights(PATHS, 1.0)), images["main"])
