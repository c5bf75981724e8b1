"""keras_3t.training.accumulation: accumulated gradients equal the big batch's."""

import keras
import numpy as np
import pytest

from keras_3t.demo.toy import toy_batch
from tests.helpers import IMAGE_SIZE
from tests.helpers import tiny_model
from tests.helpers import tiny_text_tower
from tests.helpers import tiny_vit
from tests.helpers import to_numpy
from tests.helpers import two_frozen_towers

BATCH = 8


def _one_sgd_step(accumulation_steps, objective="3t", loss="softmax"):
    keras.utils.set_random_seed(0)
    if objective == "3t, two frozen towers":
        model = tiny_model(third_towers=two_frozen_towers(), loss=loss)
    else:
        model = tiny_model(
            objective, third_backbone=tiny_vit() if objective == "3t" else None, loss=loss
        )
    before = [to_numpy(v) for v in model.trainable_variables]
    # SGD with learning rate 1: each weight moves by exactly its gradient.
    model.compile(optimizer=keras.optimizers.SGD(1.0), accumulation_steps=accumulation_steps)
    logs = model.train_on_batch(toy_batch(BATCH, image_size=IMAGE_SIZE, seed=1), return_dict=True)
    # Keyed by position and name (paths carry each model's numbered names).
    return logs, {
        (i, v.name): start - to_numpy(v)
        for i, (v, start) in enumerate(zip(model.trainable_variables, before))
    }


@pytest.mark.parametrize(
    "objective,loss,steps",
    [
        ("3t", "softmax", 4),
        ("3t", "sigmoid", 2),
        ("clip", "softmax", 2),
        ("3t, two frozen towers", "softmax", 2),
    ],
)
def test_accumulated_gradients_equal_the_big_batch(objective, loss, steps):
    logs, gradients = _one_sgd_step(1, objective, loss)
    accumulated_logs, accumulated = _one_sgd_step(steps, objective, loss)
    for name, value in logs.items():
        np.testing.assert_allclose(accumulated_logs[name], value, rtol=1e-6, err_msg=name)
    for path, gradient in gradients.items():
        np.testing.assert_allclose(
            accumulated[path], gradient, atol=2e-6, rtol=1e-4, err_msg=str(path)
        )
    # The logit scale's gradient is counted once, not once per micro-batch.
    scale = [g for (_, name), g in gradients.items() if name.startswith("logit_scale")][0]
    assert abs(scale) > 1e-4


def test_accumulation_runs_the_frozen_third_tower_once_per_micro_batch():
    model = tiny_model("3t", third_backbone=tiny_vit())
    model.compile(accumulation_steps=4)
    calls = {"embed_batch": 0, "third_features": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return call

    # Counted per trace on TensorFlow and JAX, per step on PyTorch: compare
    # the two counts, not either with a number of steps.
    model.embed_batch = counted("embed_batch", model.embed_batch)
    model.third_tower.features = counted("third_features", model.third_tower.features)
    model.train_on_batch(toy_batch(BATCH, image_size=IMAGE_SIZE, seed=1))
    # Each micro-batch is embedded twice (without, then with gradient).
    assert calls["embed_batch"] > 0
    assert calls["third_features"] * 2 == calls["embed_batch"]


def test_accumulation_refuses_what_would_make_it_inexact(tmp_path):
    model = tiny_model("3t", third_backbone=tiny_vit())
    model.compile(accumulation_steps=3)
    with pytest.raises(ValueError, match="does not divide into accumulation_steps"):
        model.train_on_batch(toy_batch(BATCH, image_size=IMAGE_SIZE, seed=0))
    with pytest.raises(ValueError, match="positive integer"):
        model.compile(accumulation_steps=0)
    with pytest.raises(ValueError, match="dropout"):
        tiny_model_with_dropout().compile(accumulation_steps=2)
    # The setting is saved with the model and restored with its optimizer.
    model.compile(accumulation_steps=4)
    path = str(tmp_path / "model.keras")
    model.save(path)
    assert keras.saving.load_model(path).accumulation_steps == 4


def tiny_model_with_dropout():
    from keras_3t import ImageTower
    from keras_3t import ThreeTowerModel

    return ThreeTowerModel(
        image_tower=ImageTower(tiny_vit(), 16),
        text_tower=tiny_text_tower(dropout=0.1),
        objective="clip",
    )
