"""keras_3t.demo.main_job: one data order per run, α chosen on validation, and the
recipes built on it (the seeds' summary, the regime map's plan and summary)."""

import json
import os

import keras
import numpy as np
import pytest

from keras_3t.demo import main_job
from tests.helpers import ROOT
from tests.helpers import load_script


def _fake_run(itr, alphas_itr):
    """A results.json-like dict with the given I→T R@1 per model and along α."""

    def metrics(value):
        return {key: value for key in main_job.COLUMNS}

    models = {name: {"metrics": metrics(value)} for name, value in itr.items()}
    for name in ("3T", "3T mismatched"):
        models[name]["alpha_sweep"] = [
            {"alpha": alpha, **metrics(value)} for alpha, value in zip(main_job.ALPHAS, alphas_itr)
        ]
        models[name]["chosen_alpha"] = {key: 0.5 for key in main_job.COLUMNS}
    return {"models": models, "backend": "torch"}


def test_seed_summary_counts_where_the_papers_statements_hold():
    demo_seeds = load_script("recipes/demo_seeds.py")
    holds = _fake_run(
        {"CLIP": 0.3, "LiT": 0.2, "3T": 0.4, "LiT mismatched": 0.1, "3T mismatched": 0.29},
        [0.2, 0.3, 0.45, 0.4, 0.4],
    )
    fails = _fake_run(
        {"CLIP": 0.3, "LiT": 0.5, "3T": 0.2, "LiT mismatched": 0.35, "3T mismatched": 0.1},
        [0.3, 0.25, 0.2, 0.2, 0.2],
    )
    checks = demo_seeds.STATEMENTS + demo_seeds.OBSERVATIONS
    assert set(demo_seeds.expectations([holds]).values()) == {1}
    assert set(demo_seeds.expectations([fails]).values()) == {0}
    assert demo_seeds.expectations([holds, fails]) == {
        (statement, key): 1 for statement, key, _ in checks
    }
    table = demo_seeds.markdown([holds, fails])
    assert "| CLIP | 0.300 ± 0.000 |" in table
    assert "| 3T | 0.300 ± 0.100 |" in table
    assert "| 3T α=0.50 | 0.325 ± 0.125 |" in table
    assert "| 3T, α chosen on validation | 0.325 ± 0.125 |" in table
    assert "- retrieval: 3T > LiT (T→I R@1): 1/2" in table


# The whole map end to end; the tests beside it check its plan and summary.
@pytest.mark.slow
@pytest.mark.one_backend
def test_regime_map_trains_each_run_once_and_summarizes(tmp_path, monkeypatch):
    regime_map = load_script("recipes/regime_map.py")
    root = str(tmp_path / "map")
    arguments = [
        "--root",
        root,
        "--labelled",
        "150",
        "--pairs",
        "300",
        "--seeds",
        "0",
        "--budget",
        "quick",
        "--pretrain-steps",
        "3",
    ]
    summary = regime_map.main(arguments)
    assert sorted(os.listdir(os.path.join(root, "runs"))) == [
        "3t_L150_P300_seed0",
        "clip_P300_seed0",
        "lit_L150_P300_seed0",
    ]
    assert os.path.isdir(os.path.join(root, "third_towers", "L150", "digit_classifier"))
    (cell,) = summary["cells"]
    assert (cell["labelled_digits"], cell["train_digits"], cell["seeds"]) == (150, 300, [0])
    runs = regime_map.load_runs(root)
    for baseline, objective in (("LiT", "lit"), ("CLIP", "clip")):
        for key, _ in regime_map.MAP_METRICS:
            expected = (
                runs["3t_L150_P300_seed0"]["metrics"][key]
                - runs[regime_map.run_name(objective, 150, 300, 0)]["metrics"][key]
            )
            assert cell["differences"][f"3T - {baseline} {key}"]["values"] == [
                pytest.approx(expected)
            ]
    assert runs["lit_L150_P300_seed0"]["labelled_digits"] == 150
    assert runs["clip_P300_seed0"]["labelled_digits"] is None
    assert os.path.getsize(os.path.join(root, "regime_map.png")) > 0

    # Resumed: finished runs are reused, nothing is trained again.
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(regime_map, "train_run", refuse)
    assert regime_map.main(arguments)["cells"] == summary["cells"]


# Reads committed files only, whatever the backend.
@pytest.mark.one_backend
def test_results_page_shows_the_regime_map_computed_from_the_published_runs():
    regime_map = load_script("recipes/regime_map.py")
    published = os.path.join(ROOT, "docs", "results", "regime_map")
    runs = {}
    for name in sorted(os.listdir(os.path.join(published, "runs"))):
        with open(os.path.join(published, "runs", name)) as file:
            runs[name.removesuffix(".json")] = json.load(file)
    summary = regime_map.summarize(runs, regime_map.LABELLED, regime_map.PAIRS)
    planned = regime_map.planned_runs(
        regime_map.LABELLED, regime_map.PAIRS, regime_map.SEEDS, regime_map.DEFAULT_CELL_SEEDS
    )
    assert sorted(runs) == sorted(regime_map.run_name(*run) for run in planned)
    table = regime_map.markdown_map(summary)
    with open(os.path.join(published, "summary.md"), encoding="utf-8") as file:
        assert file.read() == table + "\n"
    with open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8") as file:
        assert table in file.read()


def test_regime_map_plan_runs_clip_once_per_pairs_and_seed_and_the_default_cell_first():
    regime_map = load_script("recipes/regime_map.py")
    plan = regime_map.planned_runs(
        (150, 500), (300, 2500), seeds=(0, 1), default_cell_seeds=(0, 1, 2)
    )
    names = [regime_map.run_name(*run) for run in plan]
    assert len(names) == len(set(names))
    assert names[:3] == ["clip_P2500_seed0", "lit_L500_P2500_seed0", "3t_L500_P2500_seed0"]
    assert sum(name.startswith("clip_") for name in names) == 2 * 2 + 1
    assert [name for name in names if name.endswith("seed2")] == [
        "clip_P2500_seed2",
        "lit_L500_P2500_seed2",
        "3t_L500_P2500_seed2",
    ]
    # Every seed-0 run comes before any seed-1 run.
    assert max(i for i, n in enumerate(names) if n.endswith("seed0")) < min(
        i for i, n in enumerate(names) if n.endswith("seed1")
    )
    with pytest.raises(ValueError, match="pools would overlap"):
        regime_map.main(["--labelled", "1500", "--pairs", "3000", "--summarize-only"])


def test_default_output_folder_names_backend_and_run():
    args = main_job.parse_args(["--regime", "clean", "--mismatched", "--seed", "2"])
    backend = keras.backend.backend()
    assert main_job.default_output(args) == os.path.join(
        "runs", f"demo_{backend}_clean_mismatched_seed2"
    )
    quick = main_job.default_output(main_job.parse_args(["--quick"]))
    assert quick == os.path.join("runs", f"demo_{backend}_web_quick_seed0")


TINY_BUDGET = dict(train_scenes=64, steps=4, batch_size=16, test_scenes=40, epochs=2)


# The batches come from tf.data and α from the sweep's numbers, whatever the backend.
@pytest.mark.one_backend
def test_every_model_of_a_run_sees_the_same_batches_and_3t_picks_alpha_on_validation():
    train, preprocessor, tasks = main_job.prepare_data("web", TINY_BUDGET, seed=0)
    validation = main_job.evaluation_tasks(preprocessor, TINY_BUDGET, 0, split="validation")
    assert not np.array_equal(validation["zero_shot"]["images"], tasks["zero_shot"]["images"])

    def train_clip():
        _, result = main_job.train_and_evaluate(
            "CLIP", "clip", None, train, preprocessor, tasks, TINY_BUDGET, 0, validation
        )
        return result

    # Two models trained one after the other in one process: the same
    # batches in the same order give the same losses, step for step (a
    # pipeline iterated a second time would reshuffle).
    first, second = train_clip(), train_clip()
    np.testing.assert_allclose(first["history"]["loss"], second["history"]["loss"], rtol=1e-5)
    assert "chosen_alpha" not in first

    from keras_3t.demo.digit_models import load_third_tower_backbone

    _, result = main_job.train_and_evaluate(
        "3T",
        "3t",
        load_third_tower_backbone("matched"),
        train,
        preprocessor,
        tasks,
        TINY_BUDGET,
        0,
        validation,
    )
    assert result["chosen_alpha"] == main_job.chosen_alphas(result["alpha_sweep_validation"])
    table = main_job.results_table({"3T": result})
    at_chosen = main_job.at_chosen_alpha(result)
    assert f"| 3T, α chosen on validation | {at_chosen['zero_shot_top1']:.3f} (α=" in table


def test_alpha_is_chosen_per_metric_on_validation_and_ties_go_to_the_larger_alpha():
    rows = [{"alpha": alpha, **{key: 0.0 for key in main_job.COLUMNS}} for alpha in main_job.ALPHAS]
    rows[1]["zero_shot_top1"] = 0.9
    for row in rows[2:4]:
        row["image_to_text_r1"] = 0.5
    chosen = main_job.chosen_alphas(rows)
    assert chosen["zero_shot_top1"] == 0.25
    assert chosen["image_to_text_r1"] == 0.75
    assert chosen["text_to_image_r1"] == 1.0
    result = {"alpha_sweep": rows, "chosen_alpha": chosen}
    assert main_job.at_chosen_alpha(result)["zero_shot_top1"] == 0.9


def test_progress_names_the_model_the_time_spent_and_an_estimate_of_the_time_left():
    assert main_job.progress(1, 3, "CLIP", 12.4, []) == "model 1 of 3: CLIP; 12s elapsed"
    # Two models took 100 s and 140 s: two more are left, 120 s each.
    assert (
        main_job.progress(3, 4, "3T", 250, [100, 140])
        == "model 3 of 4: 3T; 4m 10s elapsed, about 4m 00s left"
    )
    assert main_job.duration(3725) == "1h 02m"
