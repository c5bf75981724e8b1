"""The training recipes in recipes/ train, cache, accumulate and save."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.data.caption_files import write_own_captions
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
        written = os.path.getmtime(os.path.join(cache_dir, "features.npz"))
        history = recipe.main(arguments + ["--overwrite"])  # reads the cache, does not rewrite it
        assert os.path.getmtime(os.path.join(cache_dir, "features.npz")) == written
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


def test_second_tower_summary_reports_alpha_1_and_the_validation_chosen_alpha():
    recipe = load_script("recipes/second_tower.py")
    backbones = {"matched": "a", "mismatched": "b"}
    assert recipe.third_backbone("both", backbones) == {"digits": "a", "thickness": "b"}
    assert recipe.third_backbone("both_main_third", backbones) == {"digits": "a", "thickness": "b"}
    assert recipe.third_backbone("mismatched", backbones) == "b"
    # The main pair keeps 1/3 of the loss; the four frozen-tower pairs share the rest.
    weights = recipe.PAIR_WEIGHTS["both_main_third"]
    assert weights["image_text"] == pytest.approx(1 / 3)
    assert sum(weights.values()) == pytest.approx(1.0) and len(weights) == 5

    def run(seed, top1_at_half, top1_at_one, chosen):
        rows = [
            {"alpha": 0.5, "zero_shot_top1": top1_at_half},
            {"alpha": 1.0, "zero_shot_top1": top1_at_one},
        ]
        for row in rows:
            row.update(image_to_text_r1=row["alpha"], text_to_image_r1=1 - row["alpha"])
        return {
            "variant": "both",
            "seed": seed,
            "alpha_sweep": rows,
            "metrics": rows[1],
            "chosen_alpha": {key: chosen for key in recipe.METRICS},
        }

    summary = recipe.summarize([run(0, 0.6, 0.5, 0.5), run(1, 0.8, 0.7, 1.0)])
    top1 = summary["both"]["zero_shot_top1"]
    assert top1["chosen_alphas"] == [0.5, 1.0]
    assert top1["chosen"] == pytest.approx((0.65, 0.05))
    assert top1["alpha_1"] == pytest.approx((0.6, 0.1))
    assert "| both | 2 | 0.600 ± 0.100 | 0.650 ± 0.050 (α: 0.5, 1)" in recipe.table(summary)


def test_statement_runs_plan_each_run_once_experiment_by_experiment():
    recipe = load_script("recipes/statement_runs.py")
    plan = recipe.planned_runs(["reference", "width"], [0, 1])
    names = [recipe.run_name(*run) for run in plan]
    assert len(names) == len(set(names)) == 2 * 3 + 2 * 4
    assert names[:3] == [
        "clip_none_w64_P2500_seed0",
        "lit_L500_w64_P2500_seed0",
        "3t_L500_w64_P2500_seed0",
    ]
    # A run two experiments share is planned once.
    assert recipe.planned_runs(["reference", "reference"], [0]) == recipe.planned_runs(
        ["reference"], [0]
    )
    assert set(recipe.TOWERS) >= {
        tower for runs in recipe.EXPERIMENTS.values() for _, tower, *_ in runs
    } - {None}


def test_statement_runs_score_the_missing_digits_on_their_own():
    recipe = load_script("recipes/statement_runs.py")
    from keras_3t.demo import main_job

    budget = {"train_scenes": 64, "test_scenes": 120}
    _, preprocessor, tasks = main_job.prepare_data("web", budget, seed=0)
    missing = recipe.missing_digit_tasks(tasks, preprocessor, budget, seed=0)
    assert set(missing["zero_shot"]["labels"].tolist()) == set(recipe.MISSING_DIGITS)
    everything = len(tasks["retrieval"]["text_to_image"])
    kept = len(missing["retrieval"]["text_to_image"])
    assert 0 < kept < everything
    assert (
        len(missing["retrieval"]["images"])
        == kept
        == len(missing["retrieval"]["texts"]["token_ids"])
    )


def _statement_results(root, seeds=(0, 1, 2)):
    """A results folder in which every statement of recipes/paper_statements.py holds."""
    import json

    alphas = (0.0, 0.25, 0.5, 0.75, 1.0)
    keys = ("zero_shot_top1", "image_to_text_r1", "text_to_image_r1")

    def metrics(zero_shot, recall):
        return {"zero_shot_top1": zero_shot, "image_to_text_r1": recall, "text_to_image_r1": recall}

    def three_t(zero_shot, recall):
        sweep = [
            {
                "alpha": a,
                **{k: v + (0.1 if 0 < a < 1 else 0) for k, v in metrics(zero_shot, recall).items()},
            }
            for a in alphas
        ]
        return {
            "metrics": metrics(zero_shot, recall),
            "alpha_sweep": sweep,
            "chosen_alpha": {k: 0.5 for k in keys},
        }

    demo = {
        "CLIP": {"metrics": metrics(0.3, 0.1)},
        "LiT": {"metrics": metrics(0.9, 0.2)},
        "3T": three_t(0.7, 0.3),
        "LiT mismatched": {"metrics": metrics(0.25, 0.05)},
        "3T mismatched": three_t(0.35, 0.15),
    }
    # (objective, tower, width, P): (zero-shot, R@1, zero-shot on the missing digits)
    statement = {
        ("clip", None, 64, 2500): (0.3, 0.1, 0.3),
        ("lit", "L500", 64, 2500): (0.9, 0.2, 0.9),
        ("3t", "L500", 64, 2500): (0.7, 0.3, 0.7),
        ("lit", "deficient", 64, 2500): (0.6, 0.15, 0.1),
        ("3t", "deficient", 64, 2500): (0.65, 0.25, 0.5),
        ("lit", "L20s", 64, 2500): (0.5, 0.1, 0.5),
        ("3t", "L20s", 64, 2500): (0.6, 0.2, 0.6),
        **{
            (o, t, 64, 2500): (z, 0.2, z)
            for t in ("L50s", "L150")
            for o, z in (("lit", 0.8), ("3t", 0.7))
        },
        ("lit", "parity", 64, 2500): (0.2, 0.05, 0.2),
        ("3t", "parity", 64, 2500): (0.35, 0.15, 0.35),
        ("lit", "L500", 32, 2500): (0.9, 0.15, 0.9),
        ("3t", "L500", 32, 2500): (0.7, 0.2, 0.7),
        ("lit", "L500", 128, 2500): (0.9, 0.22, 0.9),
        ("3t", "L500", 128, 2500): (0.7, 0.4, 0.7),
        ("lit", "L500", 64, 300): (0.9, 0.18, 0.9),
        ("3t", "L500", 64, 300): (0.7, 0.2, 0.7),
    }
    os.makedirs(os.path.join(root, "statements", "runs"))
    for seed in seeds:
        for regime in ("web", "clean"):
            with open(os.path.join(root, f"{regime}_seed{seed}.json"), "w") as file:
                json.dump({"models": demo}, file)
        for (objective, tower, width, pairs), (zero_shot, recall, missing) in statement.items():
            run = {
                "metrics": metrics(zero_shot, recall),
                "metrics_on_missing_digits": metrics(missing, recall),
                "third_tower_held_out_accuracy": 0.5,
            }
            name = f"{objective}_{tower or 'none'}_w{width}_P{pairs}_seed{seed}.json"
            with open(os.path.join(root, "statements", "runs", name), "w") as file:
                json.dump(run, file)


def test_paper_statements_table_computes_each_verdict_from_the_run_files(tmp_path):
    import json

    recipe = load_script("recipes/paper_statements.py")
    root = str(tmp_path / "results")
    _statement_results(root)
    table = recipe.rows(recipe.Runs(root))
    assert [row.key for row in table] == list("abcdef") + ["f′"] + list("ghij")
    assert {row.key: row.verdict for row in table} == {row.key: "**holds**" for row in table}
    a = next(row for row in table if row.key == "a")
    assert a.outcome == "3/3; I→T R@1 3T − LiT +0.100 ± 0.000; T→I R@1 3T − LiT +0.100 ± 0.000"

    # One seed where LiT retrieves better: row a is mixed, and says 2/3.
    path = os.path.join(root, "web_seed1.json")
    with open(path) as file:
        run = json.load(file)
    run["models"]["LiT"]["metrics"]["image_to_text_r1"] = 0.5
    with open(path, "w") as file:
        json.dump(run, file)
    verdicts = {row.key: row for row in recipe.rows(recipe.Runs(root))}
    assert verdicts["a"].verdict == "mixed" and verdicts["a"].outcome.startswith("2/3")
    assert verdicts["b"].verdict == "**holds**"

    # Without the weaker towers' 3T runs, row e is not run yet, and says so.
    for seed in (0, 1, 2):
        os.remove(os.path.join(root, "statements", "runs", f"3t_L20s_w64_P2500_seed{seed}.json"))
    e = next(row for row in recipe.rows(recipe.Runs(root)) if row.key == "e")
    assert e.verdict == "not run yet" and "L20s (held-out ?): 3 of 3 cases not run yet" in e.outcome
    assert "| e | " in recipe.markdown(recipe.rows(recipe.Runs(root)))


def test_results_page_and_readme_show_the_generated_statements_table():
    recipe = load_script("recipes/paper_statements.py")
    table = recipe.rows(recipe.Runs(os.path.join(ROOT, "docs", "results")))
    with open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8") as file:
        assert recipe.markdown(table) in file.read()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as file:
        assert recipe.summary_lines(table) in file.read()


def test_train_recipe_warns_once_when_the_presets_vocabulary_covers_the_captions_poorly(
    tmp_path, caplog
):
    captions = write_own_captions(str(tmp_path))
    recipe = load_script("recipes/train.py")
    arguments = ["--data", captions, "--image-root", str(tmp_path), "--batch-size", "4",
                 "--steps-per-epoch", "1", "--output", str(tmp_path / "run")]  # fmt: skip
    poor = (
        r"The preset's vocabulary covers the captions poorly: in the first 64, "
        r"\d+\.\d% of 256 words are unknown and \d+\.\d% are split into single characters "
        r"\(over 5% is poor\)\. Build one from them with --vocabulary captions"
    )
    with caplog.at_level("WARNING"):
        history = recipe.main([*arguments, "--vocabulary", "preset"])
    assert np.isfinite(history["loss"]).all()
    (warning,) = [r.getMessage() for r in caplog.records if "vocabulary" in r.getMessage()]
    assert re.fullmatch(poor + r"\.", warning), warning
    with pytest.raises(
        SystemExit, match=poor + r" \(training from scratch: without --from-trained\)"
    ):
        recipe.main([*arguments, "--from-trained", "--strict-vocabulary", "--overwrite"])


def test_train_recipe_resizes_a_preset_folders_text_tower_to_the_built_vocabulary(tmp_path):
    from keras_3t import presets

    captions = write_own_captions(str(tmp_path))
    recipe = load_script("recipes/train.py")
    folder = os.path.join(presets.saved_models_dir(), "3t_tiny")
    output = tmp_path / "run"
    recipe.main(
        ["--preset", folder, "--data", captions, "--image-root", str(tmp_path),
         "--vocabulary-size", "40", "--batch-size", "4", "--steps-per-epoch", "1",
         "--output", str(output)]
    )  # fmt: skip
    model = presets.load(str(output / "preset"))
    tokenizer = model.preprocessor.tokenizer
    assert model.text_tower.vocabulary_size == tokenizer.vocabulary_size() <= 40
    assert "x" in tokenizer.get_vocabulary()  # built from these captions, not the digits'


def test_train_recipe_checks_the_presets_vocabulary_quietly_on_digit_captions(tmp_path, caplog):
    captions = write_digit_scene_captions(str(tmp_path), 8)
    recipe = load_script("recipes/train.py")
    with caplog.at_level("WARNING"):
        recipe.main(
            ["--data", captions, "--image-root", str(tmp_path), "--from-trained",
             "--strict-vocabulary", "--batch-size", "4", "--steps-per-epoch", "1",
             "--output", str(tmp_path / "run")]
        )  # fmt: skip
    assert not [r for r in caplog.records if "vocabulary" in r.getMessage()]


def test_train_recipe_vocabulary_flags_refuse_with_one_line(tmp_path, monkeypatch):
    import keras_hub
    import requests

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.tokenizers.Tokenizer, "from_preset", offline)
    write_digit_scene_captions(str(tmp_path), 4)
    recipe = load_script("recipes/train.py")
    arguments = ["--data", str(tmp_path / "captions.csv"), "--image-root", str(tmp_path),
                 "--output", str(tmp_path / "run")]  # fmt: skip
    with pytest.raises(SystemExit, match="^--from-trained keeps the preset's vocabulary"):
        recipe.main([*arguments, "--from-trained", "--vocabulary", "captions"])
    offline_message = "^--vocabulary: Could not fetch the keras-hub tokenizer preset 'bert_tiny"
    with pytest.raises(SystemExit, match=offline_message):
        recipe.main([*arguments, "--vocabulary", "bert_tiny_en_uncased"])
    with pytest.raises(SystemExit, match="neither a keras-hub tokenizer preset name"):
        recipe.main([*arguments, "--vocabulary", "bert_tiny_en_uncase"])
    assert not os.path.exists(tmp_path / "run")
