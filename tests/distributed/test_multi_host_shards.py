"""Two processes on 127.0.0.1 train from img2dataset's shards and their
feature shards with recipes/train.py --data-parallel: TensorFlow's
MultiWorkerMirroredStrategy and JAX's multi-process keras.distribution
(`jax.distributed` over gloo on the CPU). Each process reads its own shards;
the result equals one process trained on the same global batches (each
process's batch, concatenated), and a run whose worker was killed resumes
from the last checkpoint to the same weights."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_3t import data
from keras_3t import presets
from keras_3t.checkpoint import list_checkpoints
from tests.helpers import ROOT
from tests.helpers import free_ports

pytestmark = pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax"),
    reason="TensorFlow's and JAX's multi-process training (PyTorch: torchrun, tests/distributed)",
)
PROCESSES = 2
BATCH_SIZE = 8
IMAGE_SIZE = 56  # 3t_tiny's


@pytest.fixture(scope="module")
def shards(img2dataset_outputs, tmp_path_factory):
    """img2dataset's 4 webdataset shards, and 3t_tiny's feature shards of them."""
    webdataset = img2dataset_outputs["webdataset"]
    features = str(tmp_path_factory.mktemp("features"))
    data.write_feature_shards(presets.load("3t_tiny"), webdataset, features, IMAGE_SIZE)
    return webdataset, features


def start(shards, output, *flags):
    """recipes/train.py --data-parallel in two processes of this backend."""
    webdataset, features = shards
    command = [
        sys.executable,
        os.path.join(ROOT, "recipes", "train.py"),
        "--data", webdataset,
        "--third-tower-features", features,
        "--batch-size", str(BATCH_SIZE),
        "--data-parallel",
        "--output", str(output),
        # The one-process reference below tokenizes with the preset's vocabulary.
        "--vocabulary", "preset",
        *flags,
    ]  # fmt: skip
    ports = free_ports(PROCESSES)
    processes = []
    for index in range(PROCESSES):
        environment = dict(os.environ)
        if keras.backend.backend() == "tensorflow":
            cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
            task = {"type": "worker", "index": index}
            environment["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
            extra = ["--jit-compile", "false"]  # XLA fails under tf.distribute on CPUs
        else:
            extra = ["--coordinator", f"127.0.0.1:{ports[0]}", "--num-processes", "2"]
            extra += ["--process-id", str(index)]
        processes.append(
            subprocess.Popen(
                command + extra,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return processes


def finish(processes):
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    return [stdout for stdout, _ in outputs]


def one_process_on_the_same_global_batches(shards, epochs, steps_per_epoch):
    """What the recipe does, in this process, on every process's batches at once."""
    webdataset, features_folder = shards
    keras.utils.set_random_seed(0)
    model = presets.load("3t_tiny", weights=False)
    features = data.load_feature_shards(features_folder, model)
    per_process = [
        data.make_dataset(
            data.from_img2dataset(webdataset, PROCESSES, index, third_tower_features=features),
            model.preprocessor,
            IMAGE_SIZE,
            BATCH_SIZE // PROCESSES,
            seed=0,
            random_crop_scale=None,
            third_tower_cache=features,
        )
        for index in range(PROCESSES)
    ]
    import tensorflow as tf

    global_batches = tf.data.Dataset.zip(tuple(per_process)).map(
        lambda *batches: {key: tf.concat([b[key] for b in batches], 0) for key in batches[0]}
    )
    model.compile(total_steps=epochs * steps_per_epoch, jit_compile=False)
    history = model.fit(
        global_batches, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=0
    )
    return history.history["loss"], model.get_weights()


def assert_equals_one_process(output, expected_losses, expected_weights):
    with open(os.path.join(output, "history.json")) as file:
        losses = json.load(file)["loss"]
    # An epoch resumed mid-way logs the mean of its steps after the resume:
    # compare the epochs that ran whole.
    assert losses[-1] == pytest.approx(expected_losses[-1], rel=1e-5)
    assert len(losses) == len(expected_losses)
    weights = presets.load(str(output / "preset")).get_weights()
    for actual, expected in zip(weights, expected_weights, strict=True):
        # float32 rounding of the gradients' sums over the processes.
        np.testing.assert_allclose(actual, expected, atol=2e-5)


def test_two_processes_from_shards_equal_one_process_on_the_same_global_batches(shards, tmp_path):
    output = tmp_path / "run"
    stdout = finish(start(shards, output, "--epochs", "2", "--steps-per-epoch", "2"))
    assert "final loss" in stdout[0] and "final loss" not in stdout[1]  # only process 0 reports
    assert sorted(os.listdir(output)) == ["checkpoints", "history.json", "preset"]
    losses, weights = one_process_on_the_same_global_batches(shards, 2, 2)
    with open(os.path.join(output, "history.json")) as file:
        assert json.load(file)["loss"] == pytest.approx(losses, rel=1e-5)
    assert_equals_one_process(output, losses, weights)


@pytest.mark.slow
def test_killing_one_worker_and_restarting_both_resumes_from_the_last_checkpoint(shards, tmp_path):
    output = tmp_path / "run"
    flags = ["--epochs", "2", "--steps-per-epoch", "3", "--checkpoint-every", "2"]
    processes = start(shards, output, *flags)
    checkpoints = output / "checkpoints"
    deadline = time.time() + 300
    while not list_checkpoints(checkpoints) and time.time() < deadline:
        assert all(process.poll() is None for process in processes)
        time.sleep(0.01)
    processes[1].send_signal(signal.SIGKILL)
    # Process 0 waits for its peer in the next step: stopped too, as a
    # cluster manager stops a job whose worker died.
    processes[0].send_signal(signal.SIGKILL)
    for process in processes:
        process.communicate()
    assert not (output / "preset").exists()
    killed_at = list_checkpoints(checkpoints)[-1][0]
    assert killed_at < 6

    stdout = finish(start(shards, output, *flags, "--resume"))
    assert f"Resuming from {checkpoints / f'step-{killed_at:09d}'}" in stdout[0]
    assert_equals_one_process(output, *one_process_on_the_same_global_batches(shards, 2, 3))
