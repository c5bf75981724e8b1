"""KerasTuner: ThreeTowerHyperModel and recipes/sweep_3t.py."""

import csv
import json
import math
import os
import signal
import subprocess
import sys

import keras
import keras_tuner
import pytest

from keras_3t import presets
from keras_3t.evaluation import evaluate_model
from keras_3t.tuning import SEARCH_SPACE
from keras_3t.tuning import ThreeTowerHyperModel
from tests.helpers import ROOT
from tests.helpers import load_script

RECIPE = os.path.join(ROOT, "recipes", "sweep_3t.py")
TINY_SWEEP = [
    "--max-trials",
    "2",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "3",
    "--batch-size",
    "32",
    "--train-scenes",
    "96",
    "--test-scenes",
    "50",
]


def recipe():
    return load_script("recipes/sweep_3t.py")


def test_fixed_knobs_reach_the_model():
    fixed = {
        "learning_rate": 3e-3,
        "weight_image_text": 0.5,
        "weight_image_third": 0.2,
        "weight_text_third": 0.3,
        "temperature": 0.05,
        "shared_logit_scale": True,
        "adaptor_input": "embedding",
        "shared_head": True,
    }
    hypermodel = ThreeTowerHyperModel("3t_tiny", evaluation=None, search=[], fixed=fixed)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values == {}
    assert model.pair_weights == (0.5, 0.2, 0.3)
    assert model.logit_scale_init == pytest.approx(math.log(20.0))
    assert model.shared_logit_scale and model.adaptor_input == "embedding"
    assert model.third_tower.shared_head
    learning_rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert learning_rate == pytest.approx(3e-3)


def test_searched_knobs_are_hyperparameters_over_their_ranges():
    hypermodel = ThreeTowerHyperModel("3t_tiny", evaluation=None, search=list(SEARCH_SPACE))
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    assert set(hp.values) == set(SEARCH_SPACE)
    assert hp.get("learning_rate") == pytest.approx(1e-4)  # a fresh space starts at the minimum
    ranges = {p.name: p for p in hp.space}
    assert ranges["temperature"].sampling == "log"
    assert list(ranges["adaptor_input"].values) == ["pooled", "embedding"]


def test_the_same_hyperparameters_and_seed_give_the_same_model():
    hypermodel = ThreeTowerHyperModel("3t_tiny", evaluation=None, search=["temperature"], seed=3)
    first, second = (hypermodel.build(keras_tuner.HyperParameters()) for _ in range(2))
    for a, b in zip(first.get_weights(), second.get_weights()):
        assert (a == b).all()


def test_bad_knobs_are_refused():
    with pytest.raises(ValueError, match="Unknown knob.*'temprature'"):
        ThreeTowerHyperModel("3t_tiny", evaluation=None, search=["temprature"])
    with pytest.raises(ValueError, match="both searched and fixed"):
        ThreeTowerHyperModel(
            "3t_tiny", evaluation=None, search=["temperature"], fixed={"temperature": 0.1}
        )
    with pytest.raises(ValueError, match="third tower; clip_tiny is a clip model"):
        ThreeTowerHyperModel("clip_tiny", evaluation=None, search=["weight_image_third"])
    with pytest.raises(ValueError, match="Did you mean '3t_tiny'"):
        ThreeTowerHyperModel("3t_tinny", evaluation=None)
    with pytest.raises(ValueError, match="saved preset folder"):
        ThreeTowerHyperModel(os.path.join(presets.saved_models_dir(), "3t_tiny"), evaluation=None)
    with pytest.raises(ValueError, match="lacks"):
        ThreeTowerHyperModel("3t_tiny", evaluation={"retrieval": {"images": None}})


def read_results(output):
    with open(os.path.join(output, "results.csv")) as file:
        return list(csv.DictReader(file))


# "random" runs by default; the other KerasTuner tuners drive the same
# recipe and hypermodel, so they wait for --run-slow. One backend: a sweep is
# KerasTuner's trial loop around the hypermodel's build and fit, whose parts
# (presets, fit with EvaluationCallback, saving) the other tests check on
# every backend.
@pytest.mark.one_backend
@pytest.mark.parametrize(
    "tuner",
    [
        "random",
        pytest.param("bayesian", marks=pytest.mark.slow),
        pytest.param("hyperband", marks=pytest.mark.slow),
    ],
)
def test_sweep_writes_its_table_and_the_best_model_reproduces_its_score(tmp_path, tuner):
    output = str(tmp_path / "sweep")
    # Hyperband sizes its brackets by the epochs: 3 gives it several trials.
    epochs = ["--epochs", "3"] if tuner == "hyperband" else []
    summary = recipe().main(["--output", output, "--tuner", tuner, *TINY_SWEEP, *epochs])
    rows = read_results(output)
    assert len(rows) == summary["trials"] >= 2
    assert {row["status"] for row in rows} == {"COMPLETED"}
    assert set(rows[0]) >= {"trial", "score", "learning_rate", "weight_image_third", "temperature"}
    assert os.path.getsize(os.path.join(output, "objective.png")) > 0
    # The best trial's restored model scores what KerasTuner recorded...
    assert summary["reproduced_score"] == pytest.approx(summary["best_score"], abs=1e-6)
    # ...and so does its saved preset, reloaded.
    model = presets.load(os.path.join(output, "best_preset"))
    tasks = recipe().main_job.evaluation_tasks(model.preprocessor, {"test_scenes": 50}, 0)
    assert evaluate_model(model, **tasks)["image_to_text_r1"] == pytest.approx(
        summary["best_score"], abs=1e-6
    )
    # α was swept on the trained model, not searched.
    assert set(summary["score_by_alpha"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    assert summary["score_by_alpha"]["1.0"] == pytest.approx(summary["best_score"], abs=1e-6)
    assert "alpha" not in summary["hyperparameters"]
    with open(os.path.join(output, "summary.json")) as file:
        assert json.load(file)["best_trial"] == summary["best_trial"]


@pytest.mark.one_backend
def test_an_interrupted_sweep_resumes_without_redoing_finished_trials(tmp_path):
    output = str(tmp_path / "sweep")
    # Two trials (TINY_SWEEP's): killed as the second starts, the resumed
    # sweep runs that one again and not the first.
    command = [sys.executable, RECIPE, "--output", output, *TINY_SWEEP]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "Running Trial #2" in line:  # trial 1 is finished and saved
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    started = [line for line in resumed.stdout.splitlines() if "Running Trial #" in line]
    assert started == ["Search: Running Trial #2"]
    assert [row["status"] for row in read_results(output)] == ["COMPLETED"] * 2


@pytest.mark.one_backend
def test_a_sweep_whose_trials_all_fail_says_why(tmp_path, monkeypatch):
    def broken_fit(self, hp, model, *args, **kwargs):
        raise ValueError("the batch is broken")

    monkeypatch.setattr(ThreeTowerHyperModel, "fit", broken_fit)
    with pytest.raises(
        RuntimeError, match=r"(?s)No trial of the sweep completed \(2 failed\).*the batch is broken"
    ):
        recipe().main(["--output", str(tmp_path / "sweep"), *TINY_SWEEP])
