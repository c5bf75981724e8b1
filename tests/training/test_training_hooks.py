"""keras_3t.training.training_hooks: compile's defaults and its errors."""

import keras
import numpy as np
import pytest

from keras_3t.demo import toy
from tests.helpers import tiny_model
from tests.helpers import to_numpy


def test_compile_defaults_exclude_rank_below_two_from_weight_decay():
    model = tiny_model()
    model.compile()
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    for variable in model.trainable_variables:
        decayed = optimizer._use_weight_decay(variable)
        assert decayed == (len(variable.shape) >= 2), variable.path


def test_compile_warmup_cosine_schedule_and_bad_arguments():
    model = tiny_model("clip")
    model.compile(learning_rate=1e-2, warmup_steps=10, total_steps=110)
    schedule = model.optimizer._learning_rate  # the schedule, not its value
    values = [float(to_numpy(schedule(step))) for step in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(values, [0.0, 5e-3, 1e-2, 5e-3, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="total_steps"):
        model.compile(warmup_steps=10)
    with pytest.raises(ValueError, match="computes its own contrastive loss"):
        model.compile(loss="mse")


def test_a_token_used_twice_in_a_batch_gets_adams_update_of_its_summed_gradient():
    # Adam's first step moves every weight with a nonzero gradient g by the
    # learning rate (m / sqrt(v) = g / |g|). Tokens repeat within a batch:
    # TensorFlow's embedding gradient holds one row per use, and Keras's
    # Adam squares those rows before they are summed (v = sum of g_i^2, not
    # (sum of g_i)^2), so the step trains the dense gradient on every backend.
    model = tiny_model("clip")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2, epsilon=1e-12))
    batch = toy.toy_batch(8, image_size=16, seed=0)
    used = np.asarray(batch["token_ids"])[np.asarray(batch["padding_mask"], bool)]
    tokens, counts = np.unique(used, return_counts=True)
    assert (counts > 1).any()
    (embedding,) = [
        v for v in model.trainable_variables if v.path.endswith("token_embedding/embeddings")
    ]
    before = to_numpy(embedding)
    model.fit(batch, batch_size=8, epochs=1, verbose=0, shuffle=False)
    moved = np.abs(to_numpy(embedding) - before)
    np.testing.assert_allclose(moved[tokens], 1e-2, rtol=1e-3)
    unused = np.setdiff1d(np.arange(len(before)), tokens)
    np.testing.assert_array_equal(moved[unused], 0.0)
