"""keras-3t as users install it: the wheel, the package list, a light import."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import tomllib

import keras_3t
from keras_3t import console
from keras_3t.demo import main_job
from tests.helpers import native_lines
from tests.helpers import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_MODULES = (
    "keras_3t.demo",
    "keras_3t.demo.digit_models",
    "keras_3t.demo.digit_scenes",
    "keras_3t.demo.main_job",
)
OPTIONAL_MODULES = ("keras_tuner", "mlxtend", "matplotlib")


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """The wheel built from this checkout, installed (not editable) into a folder."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what the wheel is made of: the checkout stays clean
    # (no build/ folder) and nothing else in it can leak into the wheel.
    source = root / "source"
    for folder in ("keras_3t", "saved_models"):
        shutil.copytree(
            os.path.join(ROOT, folder),
            source / folder,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(root / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = glob.glob(str(root / "dist" / "keras_3t-*.whl"))
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(site),
            wheel,
        ],
        check=True,
        capture_output=True,
    )
    return site


@pytest.mark.one_backend
def test_wheel_ships_the_presets_and_encodes_from_outside_the_checkout(wheel_site, tmp_path):
    code = f"""
import numpy as np
import keras_3t
assert keras_3t.__file__.startswith({str(wheel_site)!r}), keras_3t.__file__
photo = np.random.default_rng(0).integers(0, 256, (2, 90, 70, 3), dtype="uint8")
for name in ("3t_tiny", "lit_tiny", "clip_tiny"):
    model = keras_3t.presets.load(name)
    images, texts = model.encode_image(photo), model.encode_text(["a 3 above a 7", "a 1"])
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    print(name, images.shape, texts.shape, float((images @ texts.T)[0, 0]))
"""
    returncode, stdout, stderr = run_python(code, cwd=str(tmp_path), PYTHONPATH=str(wheel_site))
    assert returncode == 0, stderr[-3000:]
    lines = stdout.split("\n")
    assert lines[0].startswith("3t_tiny (2, 64) (2, 64)")
    assert lines[1].startswith("lit_tiny (2, 64) (2, 64)")
    assert lines[2].startswith("clip_tiny (2, 64) (2, 64)")


# The demo at a budget of 8 steps per model, not --quick's 48 of a batch
# of 64: the same commands, files and checks, in a quarter of the time.
SMALL_BUDGET = dict(train_scenes=64, steps=4, batch_size=16, test_scenes=40, epochs=2)


@pytest.mark.one_backend
def test_wheel_runs_the_demo_quietly(wheel_site, tmp_path):
    output = str(tmp_path / "run")
    presets_dir = str(tmp_path / "presets")
    environment = dict(os.environ, PYTHONPATH=str(wheel_site))
    environment.pop(console.VERBOSE_ENVIRONMENT, None)
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    # The wheel's own command...
    version = subprocess.run(
        [str(wheel_site / "bin" / "keras-3t"), "--version"],
        cwd=str(tmp_path),
        env=environment,
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0, version.stderr[-3000:]
    assert version.stdout.strip() == f"keras-3t {keras_3t.__version__}"
    # ...and its demo command, as `keras-3t demo --quick` runs it, on the small budget.
    code = f"""
import keras_3t
assert keras_3t.__file__.startswith({str(wheel_site)!r}), keras_3t.__file__
from keras_3t.demo import main_job
main_job.BUDGETS["quick"] = {SMALL_BUDGET!r}
from keras_3t.__main__ import main
main(["demo", "--quick", "--output", {output!r}, "--save-presets", {presets_dir!r}])
"""
    process = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(tmp_path),
        env=environment,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert native_lines(process.stderr) == []
    # Which model of how many, the time spent, and from the second on, the time left.
    assert re.search(r"model 1 of 3: CLIP; \d+s elapsed\n", process.stdout)
    assert re.search(r"model 3 of 3: 3T; [\dms ]+ elapsed, about [\dms ]+ left", process.stdout)
    with open(os.path.join(output, "results.json")) as file:
        written = json.load(file)
    assert written["backend"] == "torch"
    assert set(written["models"]) == {"CLIP", "LiT", "3T"}
    assert written["models"]["3T"]["objective"] == "3t"
    for result in written["models"].values():
        assert set(main_job.COLUMNS) <= set(result["metrics"])
        assert all(0.0 <= result["metrics"][k] <= 1.0 for k in main_job.COLUMNS)
        assert len(result["history"]["loss"]) == SMALL_BUDGET["epochs"]
    alphas = [row["alpha"] for row in written["models"]["3T"]["alpha_sweep"]]
    assert alphas == list(main_job.ALPHAS)
    # α = 1 of the sweep is the 3T model itself.
    assert written["models"]["3T"]["alpha_sweep"][-1]["image_to_text_r1"] == pytest.approx(
        written["models"]["3T"]["metrics"]["image_to_text_r1"]
    )
    for name in ("results.md", "training_curves.png", "alpha_sweep.png"):
        assert os.path.getsize(os.path.join(output, name)) > 0

    # --save-presets: each trained model reloads with its tokenizer and
    # scores what the run recorded.
    from keras_3t import presets
    from keras_3t.evaluation import evaluate_model

    for name, objective in (("CLIP", "clip"), ("LiT", "lit"), ("3T", "3t")):
        model = presets.load(os.path.join(presets_dir, f"{objective}_tiny"))
        assert model.objective == objective
        tasks = main_job.evaluation_tasks(model.preprocessor, SMALL_BUDGET, seed=0)
        metrics = evaluate_model(model, zero_shot=tasks["zero_shot"])
        assert metrics["zero_shot_top1"] == pytest.approx(
            written["models"][name]["metrics"]["zero_shot_top1"], abs=1e-6
        )

    # An earlier run's folder is never overwritten without --overwrite.
    before = os.path.getmtime(os.path.join(output, "results.json"))
    with pytest.raises(SystemExit, match="--overwrite"):
        main_job.main(["--quick", "--output", output])
    assert os.path.getmtime(os.path.join(output, "results.json")) == before


def test_pyproject_lists_every_package_folder():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        listed = set(tomllib.load(file)["tool"]["setuptools"]["packages"])
    on_disk = {
        os.path.relpath(folder, ROOT).replace(os.sep, ".")
        for folder, _, files in os.walk(os.path.join(ROOT, "keras_3t"))
        if "__init__.py" in files
    }
    assert on_disk | {"keras_3t.saved_models"} == listed


def test_import_is_light_and_loads_no_optional_or_demo_module():
    code = f"""
import sys
import keras_3t
heavy = [m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules]
assert not heavy, heavy
import keras
before = set(sys.modules)
for name in keras_3t.__all__:
    if name not in ("tuning", "ThreeTowerHyperModel", "demo"):
        getattr(keras_3t, name)
loaded = set(sys.modules) - before
print(sorted(m for m in loaded if m.split(".")[0] in {OPTIONAL_MODULES!r} or m in {DEMO_MODULES!r}))
"""
    returncode, stdout, stderr = run_python(code)
    assert returncode == 0, stderr[-3000:]
    assert stdout.strip() == "[]"


def test_public_names_resolve():
    assert keras_3t.ThreeTowerModel.__name__ == "ThreeTowerModel"
    assert keras_3t.ImageConverter.__name__ == "ImageConverter"
    assert set(keras_3t.__all__) <= set(dir(keras_3t))
    with pytest.raises(AttributeError, match="no attribute 'ThreeTowers'"):
        keras_3t.ThreeTowers
