"""The scripts in benchmarks/ run and report ratios, and time the step that fit
takes."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_3t.data.shards import tar_records
from keras_3t.demo.toy import toy_batch
from tests.helpers import IMAGE_SIZE
from tests.helpers import ROOT
from tests.helpers import load_script
from tests.helpers import tiny_model
from tests.helpers import to_numpy

BATCH = 8
TRAIN_STEP = os.path.join(ROOT, "benchmarks", "train_step.py")


def run_train_step(output, *flags):
    """benchmarks/train_step.py on the tiny size and this backend, briefly."""
    tiny = ["--sizes", "tiny", "--backends", keras.backend.backend(), "--batch", "8"]
    brief = ["--warmup", "1", "--steps", "2", "--output", output]
    subprocess.run(
        [sys.executable, TRAIN_STEP, *tiny, *flags, *brief], check=True, capture_output=True
    )


@pytest.mark.one_backend
def test_train_step_benchmark_runs_and_reports_ratios(tmp_path):
    output = str(tmp_path / "train_step.json")
    run_train_step(output, "--objectives", "clip", "3t_cached", "third_forward")
    report = json.load(open(output))
    [targets] = report["targets"]
    assert targets["3t_cached_over_clip_step_time"] > 0 and targets["third_forward_s"] > 0
    assert {run["objective"] for run in report["runs"]} == {"clip", "3t_cached", "third_forward"}
    # Timed in lockstep rounds: one step of every objective per round.
    assert all(len(run["step_times_s"]) == 2 for run in report["runs"])
    # The paired ratio: the median over rounds of the two steps' ratio.
    times = {run["objective"]: run["step_times_s"] for run in report["runs"]}
    per_round = [a / b for a, b in zip(times["3t_cached"], times["clip"])]
    paired = targets["paired_3t_cached_over_clip_step_time"]
    assert paired["rounds"] == 2
    assert paired["median"] == pytest.approx(sum(per_round) / 2)
    assert min(per_round) <= paired["ci95"][0] <= paired["ci95"][1] <= max(per_round)
    assert len({run["process_id"] for run in report["runs"]}) == 1
    assert report["machine"]["cores"] == os.cpu_count()
    with pytest.raises(subprocess.CalledProcessError):  # never overwrites a report
        subprocess.run(
            [sys.executable, TRAIN_STEP, "--output", output], check=True, capture_output=True
        )


@pytest.mark.one_backend
def test_train_step_benchmark_runs_each_objective_in_its_own_process(tmp_path):
    separate = str(tmp_path / "separate.json")
    objectives = ["--objectives", "clip", "third_forward"]
    run_train_step(separate, *objectives, "--process-per-objective", "--turn-steps", "2")
    runs = json.load(open(separate))["runs"]
    assert [run["objective"] for run in runs] == ["clip", "third_forward"]
    assert len({run["process_id"] for run in runs}) == 2
    # One time per round, whatever the steps per turn.
    assert all(run["turn_steps"] == 2 and len(run["step_times_s"]) == 2 for run in runs)


def test_a_turn_times_the_steps_after_its_first(monkeypatch):

    train_step = load_script("benchmarks/train_step.py")
    # A fake clock on which the steps take 5, 1, 2 and 3 s.
    durations, calls = [5.0, 1.0, 2.0, 3.0], []
    monkeypatch.setattr(train_step.time, "perf_counter", lambda: sum(durations[: len(calls)]))
    # A turn of four: the first step untimed, the other three averaged.
    assert train_step.timed_turn(lambda: calls.append("step"), 4) == pytest.approx(2.0)
    assert len(calls) == 4
    calls.clear()
    assert train_step.timed_turn(lambda: calls.append("step"), 1) == pytest.approx(5.0)
    assert len(calls) == 1
    # open_clip's worker takes the same protocol and timing from train_step.py.
    script = os.path.join(ROOT, "benchmarks", "openclip_lockstep.py")
    usage = subprocess.run(
        [sys.executable, script, "--help"], check=True, capture_output=True, text=True
    )
    assert "--turn-steps" in usage.stdout
    rejected = subprocess.run(
        [sys.executable, script, "--open-clip-step", "x", "--config", "{}", "--turn-steps", "0"],
        capture_output=True,
        text=True,
    )
    assert rejected.returncode == 2 and "must be a positive integer" in rejected.stderr


def test_tower_breakdown_times_each_tower_both_ways(tmp_path):

    output = str(tmp_path / "breakdown.json")
    script = os.path.join(ROOT, "benchmarks", "tower_breakdown.py")
    subprocess.run(
        [
            sys.executable,
            script,
            "--sizes",
            "tiny",
            "--backends",
            keras.backend.backend(),
            "--batch",
            "8",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--torch-operators",
            "5",
            "--output",
            output,
        ],
        check=True,
        capture_output=True,
    )
    [result] = json.load(open(output))["results"]
    # PyTorch's CLIP steps also come with their profiled operators.
    assert ("aten::" in result.get("torch_operators", "")) == (keras.backend.backend() == "torch")
    medians = result["median_ms"]
    assert result["backend"] == keras.backend.backend() and result["rounds"] == 2
    breakdown = load_script("benchmarks/tower_breakdown.py")
    assert all(medians[part] > 0 for part in breakdown.PARTS)
    for tower in ("image", "text"):
        assert medians[f"{tower}_backward"] == pytest.approx(
            medians[f"{tower}_forward_backward"] - medians[f"{tower}_forward"], abs=0.02
        )
    with pytest.raises(subprocess.CalledProcessError):  # never overwrites a report
        subprocess.run(
            [sys.executable, script, "--output", output], check=True, capture_output=True
        )


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="jax.grad returns zeros, never None, for a value the loss does not read",
)
def test_tower_breakdown_refuses_a_backward_pass_that_misses_weights():
    breakdown = load_script("benchmarks/tower_breakdown.py")
    used, unused = keras.layers.Dense(3, name="used"), keras.layers.Dense(3, name="unused")
    tower = keras.Sequential([keras.Input((4,)), used, unused])
    inputs = keras.ops.ones((2, 4))
    _, forward_backward = breakdown.compiled_parts(tower, lambda _, x: used(x), inputs)
    with pytest.raises(RuntimeError, match="unused/kernel"):
        forward_backward()


def test_the_benchmarked_step_is_the_step_fit_takes():
    # benchmarks/train_step.py times the train function fit calls (on JAX
    # train_on_batch): three of its steps train a model as fit's three do.
    step_function = load_script("benchmarks/train_step.py").train_step_function
    batch = toy_batch(BATCH, image_size=IMAGE_SIZE, seed=0)
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = tiny_model()
        model.compile()
        models.append(model)
    step = step_function(models[0], batch)  # its first step builds, as fit does
    step()
    logs = step()
    history = models[1].fit(tf.data.Dataset.from_tensors(batch).repeat(3), verbose=0).history
    for benchmarked, fitted in zip(models[0].trainable_variables, models[1].trainable_variables):
        np.testing.assert_allclose(to_numpy(benchmarked), to_numpy(fitted), rtol=1e-5, atol=1e-6)
    assert int(to_numpy(models[0].optimizer.iterations)) == 3
    assert np.isfinite(float(logs["loss"])) and np.isfinite(history["loss"][-1])


def test_paired_ratios_pool_the_repeats_and_give_each_one():
    paired = load_script("benchmarks/train_step.py").paired

    def run(objective, repeat, times):
        return {
            "size": "tiny",
            "side": "keras_3t",
            "backend": "torch",
            "objective": objective,
            "repeat": repeat,
            "step_times_s": times,
        }

    runs = [
        run("clip", 0, [1.0, 1.0, 1.0]),
        run("3t_cached", 0, [1.1, 1.2, 1.1]),
        run("clip", 1, [2.0, 2.0, 2.0]),
        run("3t_cached", 1, [2.0, 2.2, 1.8]),
    ]
    result = paired(runs, "tiny", ("keras_3t", "torch", "3t_cached"), ("keras_3t", "torch", "clip"))
    assert result["rounds"] == 6
    assert result["median"] == pytest.approx(1.1)  # of 1.1, 1.2, 1.1, 1.0, 1.1, 0.9
    first, second = result["by_repeat"]
    assert (first["rounds"], second["rounds"]) == (3, 3)
    assert first["median"] == pytest.approx(1.1) and second["median"] == pytest.approx(1.0)
    # One repeat: nothing to split.
    assert "by_repeat" not in paired(
        runs[:2], "tiny", ("keras_3t", "torch", "3t_cached"), ("keras_3t", "torch", "clip")
    )


def test_optimizer_benchmark_runs(tmp_path):
    output = str(tmp_path / "optimizer.json")
    script = os.path.join(ROOT, "benchmarks", "optimizer_step.py")
    subprocess.run(
        [sys.executable, script, "--size", "tiny", "--steps", "2", "--output", output],
        check=True,
        capture_output=True,
    )
    report = json.load(open(output))
    names = [result["optimizer"] for result in report["results"]]
    assert names[:2] == ["keras.optimizers.AdamW", "keras_3t.optimization.AdamW"]
    assert len(names) == (5 if keras.backend.backend() == "torch" else 2)
    assert all(len(result["times_s"]) == 2 for result in report["results"])


@pytest.mark.one_backend
def test_input_memory_benchmark_measures_both_ways_on_the_same_shards(tmp_path):
    benchmark = load_script("benchmarks/input_memory.py")
    workdir = str(tmp_path / "work")
    sizes = ["--sizes", "400", "--shard-size", "100", "--feature-dim", "8"]
    rows = benchmark.main([*sizes, "--batches", "2", "--batch-size", "16", "--workdir", workdir])
    assert [row["examples"] for row in rows] == [400]
    assert all(row["shards"] > 0 and row["cache"] > 0 for row in rows)
    assert sorted(os.listdir(os.path.join(workdir, "data"))) == [f"{i:05d}.tar" for i in range(4)]
    # Each data shard has its feature shard, whose keys are the data shard's.
    with np.load(os.path.join(workdir, "features", "00003.tar.npz")) as features:
        keys = [key for key, _, _ in tar_records(os.path.join(workdir, "data", "00003.tar"))]
        assert features["keys"].tolist() == keys
        assert features["features"].shape == (100, 8)
    assert "| 400 |" in benchmark.markdown(rows)
