"""keras_3t.optimization: AdamW (Keras's, without its temporaries on PyTorch) and
the MaxValue constraint."""

import keras
import numpy as np
import pytest

from keras_3t.optimization import AdamW
from keras_3t.optimization import MaxValue
from keras_3t.optimization import torch_adam_update
from tests.helpers import tiny_model
from tests.helpers import to_numpy

SHAPES = [(8, 5), (5,), (3, 4, 2), ()]


def _train(make_optimizer, steps=6, schedule=False):
    rng = np.random.default_rng(0)
    variables = [
        keras.Variable(rng.normal(size=shape).astype("float32"), name=f"w{i}")
        for i, shape in enumerate(SHAPES)
    ]
    learning_rate = 1e-2
    if schedule:
        learning_rate = keras.optimizers.schedules.CosineDecay(1e-2, steps)
    optimizer = make_optimizer(
        learning_rate=learning_rate, weight_decay=0.1, beta_2=0.98, epsilon=1e-6
    )
    # Exempt the rank < 2 variables, as ThreeTowerModel.compile does.
    optimizer.exclude_from_weight_decay(var_list=variables[1:2] + variables[3:])
    for _ in range(steps):
        gradients = [
            keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
            for shape in SHAPES
        ]
        optimizer.apply(gradients, variables)
    return [to_numpy(v) for v in variables + optimizer.variables]


@pytest.mark.parametrize("schedule", [False, True])
def test_adamw_is_keras_adamw_bit_for_bit(schedule):
    ours = _train(AdamW, schedule=schedule)
    reference = _train(keras.optimizers.AdamW, schedule=schedule)
    for got, expected in zip(ours, reference):
        np.testing.assert_array_equal(got, expected)


def test_fused_adamw_agrees_with_keras_adamw_to_rounding():
    fused = _train(lambda **kwargs: AdamW(fused=True, **kwargs), schedule=True)
    reference = _train(keras.optimizers.AdamW, schedule=True)
    for got, expected in zip(fused, reference):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fused", [False, True])
def test_pytorch_update_replaces_keras_update(fused):
    variables = [keras.Variable(np.ones((3, 2), "float32"))]
    optimizer = AdamW(learning_rate=0.1)
    optimizer.build(variables)
    gradients = [keras.ops.ones((3, 2))]
    updated = torch_adam_update(optimizer, gradients, variables, 0.1, fused=fused)
    assert updated == (keras.backend.backend() == "torch")
    if updated:
        # Step 1 of Adam moves every entry by about the learning rate.
        np.testing.assert_allclose(to_numpy(variables[0]), 0.9, rtol=1e-5)
    amsgrad = AdamW(learning_rate=0.1, amsgrad=True)
    amsgrad.build(variables)
    assert not torch_adam_update(amsgrad, gradients, variables, 0.1, fused=fused)


def test_compile_default_is_this_adamw_and_survives_saving(tmp_path):
    model = tiny_model("clip")
    model.compile(learning_rate=2e-3, weight_decay=0.05)
    assert type(model.optimizer) is AdamW and not model.optimizer.fused
    model.compile(optimizer=AdamW(learning_rate=2e-3, fused=True))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is AdamW and loaded.optimizer.fused
    assert loaded.optimizer.get_config() == model.optimizer.get_config()


def test_max_value_clamps_only_above_the_maximum_after_each_step():
    variables = [keras.Variable(value) for value in (6.0, 4.0)]
    for variable in variables:
        variable.constraint = MaxValue(5.0)
    optimizer = keras.optimizers.SGD(learning_rate=0.5)
    # 6 + 1 = 7 is clamped at 5; 4 - 1 = 3 is kept.
    optimizer.apply([keras.ops.convert_to_tensor(g) for g in (-2.0, 2.0)], variables)
    assert [float(to_numpy(v)) for v in variables] == [5.0, 3.0]
    # Only the step clamps: a value assigned above the maximum stays until then.
    variables[0].assign(8.0)
    assert float(to_numpy(variables[0])) == 8.0


def test_max_value_round_trips_in_config():
    constraint = MaxValue(np.log(100.0))
    restored = keras.constraints.deserialize(keras.constraints.serialize(constraint))
    assert type(restored) is MaxValue
    assert restored.get_config() == {"max_value": float(np.log(100.0))}


def test_each_logit_scale_is_constrained_at_the_model_maximum(tmp_path):
    model = tiny_model(logit_scale_max=np.log(50.0))
    path = str(tmp_path / "model.keras")
    model.save(path)
    # The constraint is not in the config: the model rebuilds it from
    # `logit_scale_max`, so configs saved without it load with it.
    for loaded in (model, keras.saving.load_model(path)):
        assert len(loaded.logit_scales) == 3
        for variable in loaded.logit_scales.values():
            assert type(variable.constraint) is MaxValue
            assert variable.constraint.max_value == float(np.log(50.0))
