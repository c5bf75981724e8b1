"""Checkpoints: resume equals never stopping, divergence stops, damaged checkpoints refused."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_3t.callbacks import CheckpointError
from keras_3t.callbacks import NonFiniteLossError
from keras_3t.callbacks import TrainingCheckpoint
from keras_3t.checkpoint import list_checkpoints
from keras_3t.demo import toy
from keras_3t.demo.toy import toy_batch
from tests.helpers import folder_digest
from tests.helpers import load_script
from tests.helpers import tiny_model
from tests.helpers import to_numpy
from tests.helpers import two_frozen_towers
from tests.helpers import write_digit_scene_captions

ROOT = os.path.join(os.path.dirname(__file__), "..")
STEPS_PER_EPOCH = 4


class CrashAtStep(keras.callbacks.Callback):
    """Raises after `step` training steps: a crash that fit does not catch."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise KeyboardInterrupt(f"crash after step {self.step}")


def _toy_run(folder, callbacks=()):
    """Two epochs of 4 steps of a tiny 3T model with two frozen towers, its
    data resumed at the checkpoint's step."""
    keras.utils.set_random_seed(0)
    model = tiny_model(third_towers=two_frozen_towers())
    model.compile(learning_rate=3e-3, warmup_steps=2, total_steps=2 * STEPS_PER_EPOCH)
    checkpoint = TrainingCheckpoint(folder, save_every_n_steps=3)
    batches = tf.data.Dataset.from_tensor_slices(toy_batch(64, seed=0)).batch(8)
    model.fit(
        batches.skip(checkpoint.initial_step),
        epochs=2,
        steps_per_epoch=STEPS_PER_EPOCH,
        verbose=0,
        callbacks=[*callbacks, checkpoint],
    )
    return model, checkpoint


def test_resume_after_a_crash_mid_epoch_equals_the_uninterrupted_run(tmp_path):
    # With two frozen towers; one tower's resume is the recipe's below.
    whole, _ = _toy_run(str(tmp_path / "whole"))
    with pytest.raises(KeyboardInterrupt):
        _toy_run(str(tmp_path / "crash"), callbacks=[CrashAtStep(5)])
    assert [step for step, _ in list_checkpoints(str(tmp_path / "crash"))] == [3]

    resumed, checkpoint = _toy_run(str(tmp_path / "crash"))
    assert checkpoint.initial_step == 3
    # Epoch 1 resumed at its 4th step: only that step ran before epoch 2.
    assert int(to_numpy(resumed.optimizer.iterations)) == 2 * STEPS_PER_EPOCH
    for expected, actual in zip(whole.weights, resumed.weights):
        np.testing.assert_array_equal(to_numpy(actual), to_numpy(expected), err_msg=expected.path)
    for expected, actual in zip(whole.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(actual), to_numpy(expected), err_msg=expected.path)
    assert len(checkpoint.history["loss"]) == 2
    # Checkpoints at steps 3 and 6 and at the end (8), the last 3 kept.
    assert [step for step, _ in list_checkpoints(str(tmp_path / "crash"))] == [3, 6, 8]


def _recipe(output, data_folder, *extra):
    return [
        sys.executable,
        os.path.join(ROOT, "recipes", "train.py"),
        "--preset",
        "3t_tiny",
        "--data",
        os.path.join(data_folder, "captions.csv"),
        "--image-root",
        data_folder,
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--steps-per-epoch",
        "6",
        "--checkpoint-every",
        "2",
        "--keep-checkpoints",
        "2",
        "--learning-rate",
        "3e-3",
        "--output",
        output,
        *extra,
    ]


def _preset_weights(folder):
    arrays = {}
    with h5py.File(os.path.join(folder, "preset", "model.weights.h5"), "r") as file:
        file.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


@pytest.mark.one_backend
def test_recipe_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    data_folder = str(tmp_path / "data")
    os.makedirs(data_folder)
    write_digit_scene_captions(data_folder, 24)
    env = dict(os.environ, PYTHONPATH=ROOT)
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    subprocess.run(_recipe(whole, data_folder), env=env, check=True, capture_output=True)

    process = subprocess.Popen(
        _recipe(killed, data_folder), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = os.path.join(killed, "checkpoints")
    deadline = time.time() + 300
    while not list_checkpoints(checkpoints) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(killed, "preset"))  # it did not finish
    (killed_at,) = [step for step, _ in list_checkpoints(checkpoints)][-1:]
    assert killed_at < 12

    resumed = subprocess.run(
        _recipe(killed, data_folder, "--resume"), env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {os.path.join(checkpoints, f'step-{killed_at:09d}')}" in resumed.stdout

    expected, actual = _preset_weights(whole), _preset_weights(killed)
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    with open(os.path.join(whole, "history.json")) as file:
        assert len(json.load(file)["loss"]) == 2
    with open(os.path.join(killed, "history.json")) as file:
        assert len(json.load(file)["loss"]) == 2
    assert [step for step, _ in list_checkpoints(checkpoints)] == [10, 12]


def _toy_fit(model, folder, data, **kwargs):
    checkpoint = TrainingCheckpoint(folder, save_every_n_steps=1, **kwargs)
    model.fit(data, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[checkpoint])
    return checkpoint


def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model = toy.build_model("3t")
    model.compile()
    batch = toy_batch(32, seed=0)
    # Cached third-tower features, the third batch's infinite: the two pairs
    # with the third tower diverge, image-text stays finite.
    batch["third_features"] = to_numpy(model.third_tower.features(batch["images"]))
    batch["third_features"][16:24] = np.inf
    folder = str(tmp_path / "checkpoints")
    with pytest.raises(
        NonFiniteLossError,
        match=r"step 3 \(epoch 1\): loss is nan, loss_image_third is nan, "
        r"loss_text_third is nan \(finite: loss_image_text",
    ) as error:
        _toy_fit(model, folder, batch)
    assert "step-000000002" in str(error.value)
    assert [step for step, _ in list_checkpoints(folder)] == [1, 2]
    with h5py.File(os.path.join(folder, "step-000000002", "training.weights.h5"), "r") as file:
        arrays = []
        file.visititems(
            lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None
        )
    assert arrays and all(np.isfinite(a).all() for a in arrays)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A folder with the checkpoints of steps 1 and 2 of a toy CLIP run."""
    model = toy.build_model("clip")
    model.compile()
    folder = str(tmp_path_factory.mktemp("run") / "checkpoints")
    _toy_fit(model, folder, toy_batch(16, seed=0))
    return folder


def _copy(folder, tmp_path):
    return shutil.copytree(folder, str(tmp_path / "checkpoints"))


def _resume(folder, objective="clip"):
    model = toy.build_model(objective)
    model.compile()
    model.fit(
        toy_batch(16, seed=0),
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[TrainingCheckpoint(folder, save_every_n_steps=1)],
    )


def test_a_partial_checkpoint_is_ignored(tmp_path, two_checkpoints):
    folder = _copy(two_checkpoints, tmp_path)
    # What a kill during a save leaves behind.
    os.makedirs(os.path.join(folder, ".partial-abc123"))
    with open(os.path.join(folder, ".partial-abc123", "training.weights.h5"), "wb") as file:
        file.write(b"\x89HDF")
    checkpoint = TrainingCheckpoint(folder)
    assert checkpoint.initial_step == 2 and checkpoint.resumed_from.endswith("step-000000002")
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        TrainingCheckpoint(folder, resume=False)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "truncated or corrupt"),
        ("garble", "truncated or corrupt"),
        ("state", "not valid JSON"),
        ("no_state", "no state.json"),
        ("newer", "Upgrade keras-3t"),
        ("other_model", "another model's state"),
    ],
)
def test_damaged_checkpoints_give_clear_errors_and_change_nothing(
    tmp_path, two_checkpoints, damage, message
):
    folder = _copy(two_checkpoints, tmp_path)
    newest = os.path.join(folder, "step-000000002")
    weights, state = os.path.join(newest, "training.weights.h5"), os.path.join(newest, "state.json")
    if damage == "truncate":
        with open(weights, "rb+") as file:
            file.truncate(os.path.getsize(weights) // 2)
    elif damage == "garble":
        with open(weights, "rb+") as file:
            file.seek(os.path.getsize(weights) - 100)
            file.write(b"\0" * 50)
    elif damage == "state":
        with open(state, "w") as file:
            file.write('{"step": 2, ')
    elif damage == "no_state":
        os.remove(state)
    elif damage == "newer":
        with open(state) as file:
            content = json.load(file)
        with open(state, "w") as file:
            json.dump(dict(content, format_version=99, keras_3t_version="9.0"), file)
    before = folder_digest(folder)
    with pytest.raises(CheckpointError, match=message):
        _resume(folder, "3t" if damage == "other_model" else "clip")
    assert folder_digest(folder) == before


@pytest.mark.one_backend
def test_recipe_refuses_a_used_output_without_resume_and_resume_with_overwrite(tmp_path):
    recipe = load_script("recipes/train.py")
    output = tmp_path / "out"
    os.makedirs(output / "checkpoints")
    arguments = ["--data", "captions.csv", "--output", str(output)]
    with pytest.raises(SystemExit, match="pass --resume to continue its run"):
        recipe.main(arguments)
    with pytest.raises(SystemExit, match="pass one"):
        recipe.main([*arguments, "--resume", "--overwrite"])
