"""keras_3t.training.training_hooks: compile's defaults and its errors."""

import keras
import numpy as np
import pytest

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
