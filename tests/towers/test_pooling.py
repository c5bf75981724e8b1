"""keras_3t.towers.pooling: image pooling modes and text pooling over real tokens."""

import numpy as np
import pytest

from keras_3t.towers.pooling import pool_image_features
from keras_3t.towers.pooling import pool_text_features
from tests.helpers import to_numpy


def test_image_pooling_modes():
    tokens = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4)
    np.testing.assert_array_equal(to_numpy(pool_image_features(tokens, "token")), tokens[:, 0])
    np.testing.assert_allclose(
        to_numpy(pool_image_features(tokens, "mean")), tokens.mean(axis=1), rtol=1e-6
    )
    # Whether token 0 is a class token depends on the backbone: the tower
    # resolves "auto" for its family (test_keras_hub_families.py).
    with pytest.raises(ValueError, match="pass pooling='token' or pooling='mean'"):
        pool_image_features(tokens, "auto")
    grid = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(pool_image_features(grid, "auto")), grid.mean(axis=(1, 2)), rtol=1e-6
    )
    with pytest.raises(ValueError, match="pooling='token'"):
        pool_image_features(grid, "token")
    with pytest.raises(ValueError, match="Unknown image pooling"):
        pool_image_features(grid, "max")


def test_text_pooling_reads_only_real_tokens():
    features = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=bool)
    np.testing.assert_allclose(
        to_numpy(pool_text_features(features, mask, "last")),
        [features[0, 1], features[1, 3]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        to_numpy(pool_text_features(features, mask, "mean")),
        [features[0, :2].mean(0), features[1].mean(0)],
        rtol=1e-5,
    )
    np.testing.assert_array_equal(
        to_numpy(pool_text_features(features, mask, "first")), features[:, 0]
    )
