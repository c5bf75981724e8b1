"""keras_3t.optimization.AdamW: Keras's AdamW rule, fused on PyTorch."""

import json
import os
import subprocess
import sys

import keras
import numpy as np

from keras_3t import backend
from keras_3t.optimization import AdamW
from tests.conftest import tiny_model
from tests.conftest import to_numpy

SHAPES = [(8, 5), (5,), (3, 4, 2), ()]


def _train(optimizer_class, steps=6, schedule=False):
    rng = np.random.default_rng(0)
    variables = [
        keras.Variable(rng.normal(size=shape).astype("float32"), name=f"w{i}")
        for i, shape in enumerate(SHAPES)
    ]
    learning_rate = 1e-2
    if schedule:
        learning_rate = keras.optimizers.schedules.CosineDecay(1e-2, steps)
    optimizer = optimizer_class(
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
    return [to_numpy(v) for v in variables], optimizer


def test_adamw_follows_keras_adamw():
    for schedule in (False, True):
        ours, optimizer = _train(AdamW, schedule=schedule)
        reference, reference_optimizer = _train(keras.optimizers.AdamW, schedule=schedule)
        for got, expected in zip(ours, reference):
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
        for got, expected in zip(optimizer.variables, reference_optimizer.variables):
            np.testing.assert_allclose(to_numpy(got), to_numpy(expected), rtol=1e-6, atol=1e-7)


def test_pytorch_update_is_the_fused_kernel():
    variables = [keras.Variable(np.ones((3, 2), "float32"))]
    optimizer = AdamW(learning_rate=0.1)
    optimizer.build(variables)
    gradients = [keras.ops.ones((3, 2))]
    fused = backend.fused_adam_update(optimizer, gradients, variables, 0.1)
    assert fused == (keras.backend.backend() == "torch")
    if fused:
        # Step 1 of Adam moves every entry by the learning rate.
        np.testing.assert_allclose(to_numpy(variables[0]), 0.9, rtol=1e-5)
    amsgrad = AdamW(learning_rate=0.1, amsgrad=True)
    amsgrad.build(variables)
    assert not backend.fused_adam_update(amsgrad, gradients, variables, 0.1)


def test_compile_default_is_this_adamw_and_survives_saving(tmp_path):
    model = tiny_model("clip")
    model.compile(learning_rate=2e-3, weight_decay=0.05)
    assert type(model.optimizer) is AdamW
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is AdamW
    assert loaded.optimizer.get_config() == model.optimizer.get_config()


def test_optimizer_benchmark_runs(tmp_path):
    output = str(tmp_path / "optimizer.json")
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "optimizer_step.py")
    subprocess.run(
        [sys.executable, script, "--size", "tiny", "--steps", "2", "--output", output],
        check=True, capture_output=True,
    )
    report = json.load(open(output))
    names = [result["optimizer"] for result in report["results"]]
    assert names[:2] == ["keras.optimizers.AdamW", "keras_3t.optimization.AdamW"]
    assert len(names) == (4 if keras.backend.backend() == "torch" else 2)
    assert all(len(result["times_s"]) == 2 for result in report["results"])
