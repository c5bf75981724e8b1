"""Data parallelism: the contrastive negatives are the global batch.

The multi-device checks run as subprocesses (the device count or process
group is fixed when a backend starts) and print JSON that these tests read:
tests/distributed/{jax,tf,torch,multi_worker}_check.py.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_3t import ThreeTowerModel
from keras_3t.losses import contrastive_loss
from keras_3t.losses import l2_normalize
from keras_3t.losses import sigmoid_contrastive_loss
from tests.helpers import DATA_PARALLEL_MODES
from tests.helpers import ROOT
from tests.helpers import free_ports
from tests.helpers import tiny_model
from tests.helpers import to_numpy
from tests.helpers import write_digit_scene_captions

HERE = os.path.dirname(__file__)
backend_is = {
    name: pytest.mark.skipif(keras.backend.backend() != name, reason=f"{name} only")
    for name in ("jax", "tensorflow", "torch")
}


def run_check(script, *args):
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, script), *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_processes(script, argument_lists):
    """Runs one process per argument list at once; returns their JSON lines."""
    processes = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, script), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in argument_lists
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]


def assert_pair_losses_match(pair_losses):
    assert set(pair_losses) == {
        f"{loss}_{mode}" for loss in ("softmax", "sigmoid") for mode in ("global", "local")
    }
    for name, values in pair_losses.items():
        assert values["parallel"] == pytest.approx(values["single"], rel=1e-6), name
        assert values["max_gradient_difference"] < 1e-6, name


def assert_negatives_are_global(hard):
    # Rows on different devices are identical: each device alone sees no
    # hard negative, so the per-device losses are small...
    assert hard["mean_of_per_device"] < hard["single"] - 0.5
    # ...while the distributed loss, global or local, is the global one.
    assert hard["global"] == pytest.approx(hard["single"], rel=1e-6)
    assert hard["local"] == pytest.approx(hard["single"], rel=1e-6)


# --- One device: the local loss is the global loss ---------------------------


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_local_loss_equals_global_loss_in_value_and_gradient(loss):
    rng = np.random.default_rng(0)
    a0, b0 = rng.normal(size=(2, 6, 8)).astype("float32")

    def value_and_gradient(local):
        a, b = keras.Variable(a0), keras.Variable(b0)

        def objective():
            x, y = l2_normalize(a), l2_normalize(b)
            if loss == "softmax":
                return contrastive_loss(x, y, 10.0, local=local)
            return sigmoid_contrastive_loss(x, y, 10.0, -5.0, local=local)

        return _value_and_gradients(objective, [a, b])

    global_value, global_grads = value_and_gradient(False)
    local_value, local_grads = value_and_gradient(True)
    assert local_value == pytest.approx(global_value, rel=1e-6)
    for global_grad, local_grad in zip(global_grads, local_grads):
        np.testing.assert_allclose(local_grad, global_grad, atol=1e-6)


def _value_and_gradients(objective, variables):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = objective()
        return float(value), [to_numpy(g) for g in tape.gradient(value, variables)]
    if backend == "torch":
        value = objective()
        value.backward()
        return float(value), [to_numpy(v.value.grad) for v in variables]
    import jax

    def pure(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return objective()

    value, grads = jax.value_and_grad(pure)([v.value for v in variables])
    return float(value), [np.asarray(g) for g in grads]


def test_local_loss_round_trips_in_config():
    model = tiny_model("clip", local_loss=True)
    assert model.get_config()["local_loss"] is True
    assert ThreeTowerModel.from_config(model.get_config()).local_loss is True


# --- Several devices (subprocesses) -----------------------------------------


@backend_is["jax"]
def test_jax_data_parallel_matches_one_device_with_global_negatives():
    values = run_check("jax_check.py")
    assert values["devices"] == 4
    # A 3T model with two frozen towers. One global batch of 16 over 4
    # devices (a user-given DeviceMesh), with
    # the global and the local loss, and the global loss accumulated over two
    # micro-batches: fit's first loss is one device's...
    for mode in DATA_PARALLEL_MODES:
        assert values[mode]["first_fit_loss"] == pytest.approx(values["single_loss"], rel=1e-5)
        # ...and three fit steps end at the same weights, to float32 rounding.
        assert values[mode]["max_weight_difference"] < 1e-4
    # Not the mean of the four 4-example losses (each slice's negatives
    # would be only its own 3 other examples).
    assert abs(values["mean_of_per_device_losses"] - values["single_loss"]) > 0.1
    # A global batch of 10 does not split over 4 devices: JAX says so.
    assert "partitioned 4 times, but the dimension size is 10" in values["uneven_batch_error"]


@backend_is["tensorflow"]
def test_tf_mirrored_strategy_matches_one_device_with_global_negatives():
    losses = run_check("tf_check.py", "losses")
    assert losses["replicas"] == 4
    assert_pair_losses_match(losses["pair_losses"])
    assert_negatives_are_global(losses["hard_negatives"])
    values = run_check("tf_check.py", "model")
    assert values["replicas"] == 2
    model = values["model"]
    assert abs(model["mean_of_per_device_losses"] - model["single_loss"]) > 0.1
    for mode in DATA_PARALLEL_MODES:
        # The objective of 3T with two frozen towers and every gradient of
        # fit's first step equal one device's...
        assert model[mode]["first_fit_loss"] == pytest.approx(model["single_loss"], rel=1e-6)
        assert model[mode]["max_gradient_difference"] < 1e-5
        # ...and so do the weights after three fit steps ("accumulated":
        # each replica's rows in two micro-batches, the global loss).
        assert model[mode]["max_weight_difference"] < 1e-5
    assert "global batch must divide by the number of replicas" in model["uneven_batch_error"]
    assert "jit_compile=True fails under tf.distribute" in model["jit_compile_error"]


@backend_is["tensorflow"]
def test_tf_multi_worker_mirrored_strategy_two_processes(tmp_path):
    ports = free_ports(2)
    outputs = [tmp_path / f"worker_{i}.npz" for i in range(2)]
    results = run_processes("multi_worker_check.py", [(i, *ports, outputs[i]) for i in range(2)])
    assert [r["replicas"] for r in results] == [2, 2]
    assert results[0]["losses"] == results[1]["losses"]
    workers = [np.load(path) for path in outputs]
    names = workers[0].files
    count = len(names) // 2  # each file: the worker's weights, then one device's
    # Both workers end with identical weights...
    for name in names[:count]:
        np.testing.assert_array_equal(workers[0][name], workers[1][name])
    # ...equal to training on the whole batch on one device.
    for distributed, single in zip(names[:count], names[count:]):
        np.testing.assert_allclose(workers[0][distributed], workers[0][single], atol=1e-5)
    assert results[0]["losses"] == pytest.approx(results[0]["single_losses"], rel=1e-5)


@backend_is["torch"]
def test_torch_distributed_two_processes_match_one_device():
    (port,) = free_ports(1)
    results = run_processes("torch_check.py", [(rank, 2, port) for rank in range(2)])
    for result in results:
        assert result["replicas"] == 2
        assert_pair_losses_match(result["pair_losses"])
        assert_negatives_are_global(result["hard_negatives"])
        for mode in DATA_PARALLEL_MODES:
            # 3T with two frozen towers. Process 1 started from other
            # weights: fit broadcast process 0's.
            train = result[mode]
            assert train["parallel_losses"] == pytest.approx(train["single_losses"], rel=1e-5)
            assert train["max_weight_difference"] < 1e-5
        assert "Got sizes [4, 5]" in result["uneven_batch_error"]


# --- recipes/train.py --data-parallel -----------------------------------------


@pytest.fixture(scope="module")
def digit_records(tmp_path_factory):
    """Real digit scenes as PNG files, a caption file, and TFRecords of them."""
    from keras_3t import data

    folder = str(tmp_path_factory.mktemp("digits"))
    captions = write_digit_scene_captions(folder, 32)
    records = os.path.join(folder, "records")
    data.write_tfrecords(data.from_caption_file(captions, folder), records, num_shards=2)
    return records


def run_recipe(records, output, *flags, launcher=(), environment=None):
    recipe = os.path.join(ROOT, "recipes", "train.py")
    command = [*launcher, recipe] if launcher else [sys.executable, recipe]
    command += [
        "--data",
        records,
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--output",
        str(output),
        *flags,
    ]
    env = dict(os.environ, **(environment or {}))
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(output, "history.json")) as file:
        return json.load(file)


# Two recipe runs end to end. Data-parallel training itself is checked by
# the tf_check.py and jax_check.py tests above, the recipe's --data-parallel
# by test_train_recipe_under_torchrun.
@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() == "torch", reason="torch: see the torchrun test")
def test_train_recipe_data_parallel_equals_one_device(digit_records, tmp_path):
    # Two devices on the CPU: logical devices (TensorFlow) or simulated ones (JAX).
    if keras.backend.backend() == "tensorflow":
        flags, environment = ["--cpu-devices", "2"], None
    else:
        # Added to the flags the test run set (tests/conftest.py).
        devices = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
        flags, environment = [], {"XLA_FLAGS": devices.strip()}
    single = run_recipe(digit_records, tmp_path / "single")
    parallel = run_recipe(
        digit_records,
        tmp_path / "parallel",
        "--data-parallel",
        "--local-loss",
        *flags,
        environment=environment,
    )
    # The same global batches from the same seed: the same losses, up to
    # float32 rounding (TensorFlow compiles the one-device step with XLA but
    # not the replicated one) that AdamW's per-entry scaling magnifies in
    # the second step. Per-device negatives would be off by ~0.1 or more.
    assert parallel["loss"] == pytest.approx(single["loss"], rel=2e-3)
    assert sorted(os.listdir(tmp_path / "parallel")) == ["checkpoints", "history.json", "preset"]


@backend_is["torch"]
def test_train_recipe_under_torchrun(digit_records, tmp_path):
    (port,) = free_ports(1)
    launcher = (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
    )
    history = run_recipe(digit_records, tmp_path / "run", "--data-parallel", launcher=launcher)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    # Only process 0 writes: one set of outputs.
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoints", "history.json", "preset"]
    from keras_3t import presets

    assert presets.load(str(tmp_path / "run" / "preset")).objective == "3t"
