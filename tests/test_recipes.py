"""The training recipes in recipes/ train, cache, accumulate and save."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.helpers import ROOT
from tests.helpers import digit_scene_source
from tests.helpers import load_script
from tests.helpers import write_digit_scene_captions

pytestmark = pytest.mark.one_backend


def test_train_recipe_trains_a_preset_on_a_caption_file_and_saves_it(tmp_path):
    from keras_3t import presets

    # Real digit scenes written as PNG files with their captions.
    write_digit_scene_captions(str(tmp_path), 24)

    recipe = load_script("recipes/train.py")
    output = str(tmp_path / "run")
    records = str(tmp_path / "records")
    history = recipe.main(
        [
            "--preset",
            "3t_tiny",
            "--data",
            str(tmp_path / "captions.csv"),
            "--image-root",
            str(tmp_path),
            "--write-tfrecords",
            records,
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "2",
            "--output",
            output,
        ]
    )
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert sorted(os.listdir(os.path.join(output, "checkpoints"))) == [
        "step-000000002",
        "step-000000004",
    ]
    model = presets.load(os.path.join(output, "preset"))
    assert tuple(keras.ops.shape(model.encode_text(["a 3"]))) == (1, 64)
    with pytest.raises(SystemExit, match="not empty"):
        recipe.main(["--data", str(tmp_path / "captions.csv"), "--output", output])


def test_train_recipe_with_cache_accumulation_and_bfloat16(tmp_path):
    path, _ = digit_scene_source(tmp_path, 16)
    recipe = load_script("recipes/train.py")
    cache_dir = path + ".third_tower_cache"
    arguments = [
        "--preset",
        "3t_tiny",
        "--data",
        path,
        "--image-root",
        str(tmp_path),
        "--third-tower-cache",
        cache_dir,
        "--accumulation-steps",
        "2",
        "--mixed-precision",
        "--batch-size",
        "8",
        "--steps-per-epoch",
        "2",
        "--output",
        str(tmp_path / "run"),
    ]
    try:
        history = recipe.main(arguments)
        assert np.isfinite(history["loss"]).all()
        written = os.path.getmtime(os.path.join(cache_dir, "features.npy"))
        history = recipe.main(arguments + ["--overwrite"])  # reads the cache, does not rewrite it
        assert os.path.getmtime(os.path.join(cache_dir, "features.npy")) == written
        assert np.isfinite(history["loss"]).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(SystemExit, match="for 3T presets"):
        recipe.main(
            [
                "--preset",
                "clip_tiny",
                "--data",
                path,
                "--image-root",
                str(tmp_path),
                "--third-tower-cache",
                cache_dir,
                "--output",
                str(tmp_path / "clip"),
            ]
        )


def test_quickstart_recipe_trains_and_saves(tmp_path):
    command = [
        sys.executable,
        os.path.join(ROOT, "recipes", "quickstart.py"),
        "--epochs",
        "2",
        "--output",
        str(tmp_path),
    ]
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    epochs = re.findall(r"epoch +\d+ +loss ([\d.]+) +image_text", result.stdout)
    assert len(epochs) == 2 and float(epochs[1]) < float(epochs[0]), result.stdout
    rows = re.findall(r"^\| (\d\.\d\d) \|", result.stdout, re.MULTILINE)
    assert rows == ["0.00", "0.25", "0.50", "0.75", "1.00"], result.stdout
    with open(tmp_path / f"alpha_sweep_{keras.backend.backend()}.png", "rb") as plot:
        assert plot.read(4) == b"\x89PNG"
    saved = tmp_path / f"3t_{keras.backend.backend()}.keras"
    assert keras.saving.load_model(saved).objective == "3t"
    again = subprocess.run(command, env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "pass --overwrite" in again.stderr


def test_second_tower_summary_averages_seeds_and_picks_the_best_mean_alpha():
    recipe = load_script("recipes/second_tower.py")
    assert recipe.third_backbone("both", {"matched": "a", "mismatched": "b"}) == {
        "digits": "a",
        "thickness": "b",
    }
    assert recipe.third_backbone("mismatched", {"matched": "a", "mismatched": "b"}) == "b"

    def run(seed, top1_at_half, top1_at_one):
        rows = [
            {"alpha": 0.5, "zero_shot_top1": top1_at_half},
            {"alpha": 1.0, "zero_shot_top1": top1_at_one},
        ]
        for row in rows:
            row.update(image_to_text_r1=row["alpha"], text_to_image_r1=1 - row["alpha"])
        return {"variant": "both", "seed": seed, "alpha_sweep": rows}

    summary = recipe.summarize([run(0, 0.6, 0.5), run(1, 0.8, 0.7)])
    top1 = summary["both"]["zero_shot_top1"]
    assert top1["best_alpha"] == 0.5
    assert top1["best"] == pytest.approx((0.7, 0.1))
    assert top1["alpha_1"] == pytest.approx((0.6, 0.1))
    assert summary["both"]["text_to_image_r1"]["best_alpha"] == 0.5
    assert "| both | 2 | 0.600 ± 0.100 | 0.700 ± 0.100 (α=0.50)" in recipe.table(summary)
