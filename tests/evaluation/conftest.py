"""The tiny 3T model that the evaluation tests only read."""

import keras
import pytest

from tests.helpers import tiny_model


@pytest.fixture(scope="package")
def model_3t():
    keras.utils.set_random_seed(1)
    return tiny_model()
