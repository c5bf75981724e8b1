"""keras_3t.training.errors: run-time batch checks fail the same on every backend."""

import pytest

from keras_3t.demo.toy import toy_batch
from tests.helpers import tiny_model


def test_a_final_batch_of_one_in_fit_raises_on_every_backend():
    import tensorflow as tf

    model = tiny_model("clip")
    model.compile()
    # A dataset batched without drop_remainder: batch size unknown when traced.
    dataset = tf.data.Dataset.from_tensor_slices(toy_batch(5, seed=0)).batch(2)
    with pytest.raises(ValueError, match="at least 2 examples"):
        model.fit(dataset, verbose=0)
