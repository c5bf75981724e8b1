"""keras_3t.evaluation.embedding: embedding a dataset in batches."""

import numpy as np
import tensorflow as tf

from keras_3t.demo.toy import toy_batch
from keras_3t.evaluation import embed_images
from keras_3t.evaluation import embed_texts
from tests.helpers import text_of


def test_embedding_a_dataset_equals_embedding_arrays(model_3t):
    # Batches of 4, 4 and 2 both ways: two shapes to compile, not four.
    batch = toy_batch(10, seed=2)
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(4)
    np.testing.assert_allclose(
        embed_images(model_3t, dataset, alpha=0.5),
        embed_images(model_3t, batch["images"], alpha=0.5, batch_size=4),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        embed_texts(model_3t, dataset),
        embed_texts(model_3t, text_of(batch), batch_size=4),
        atol=1e-6,
    )
