import json
import os

import keras
import pytest

from keras_3t import demo
from keras_3t.__main__ import main as cli
from tests.conftest import load_script


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="one backend is enough for the end-to-end run; torch is the fastest here",
)
def test_quick_demo_writes_results_for_all_three_models(tmp_path):
    output = str(tmp_path / "run")
    presets_dir = str(tmp_path / "presets")
    summary = demo.main(["--quick", "--output", output, "--save-presets", presets_dir])
    with open(os.path.join(output, "results.json")) as file:
        written = json.load(file)
    assert set(written["models"]) == {"CLIP", "LiT", "3T"}
    assert written["models"]["3T"]["objective"] == "3t"
    for result in written["models"].values():
        assert set(demo.COLUMNS) <= set(result["metrics"])
        assert all(0.0 <= result["metrics"][k] <= 1.0 for k in demo.COLUMNS)
        assert len(result["history"]["loss"]) == demo.BUDGETS["quick"]["epochs"]
    alphas = [row["alpha"] for row in written["models"]["3T"]["alpha_sweep"]]
    assert alphas == list(demo.ALPHAS)
    # α = 1 of the sweep is the 3T model itself.
    assert written["models"]["3T"]["alpha_sweep"][-1]["image_to_text_r1"] == pytest.approx(
        written["models"]["3T"]["metrics"]["image_to_text_r1"]
    )
    for name in ("results.md", "training_curves.png", "alpha_sweep.png"):
        assert os.path.getsize(os.path.join(output, name)) > 0
    assert summary["models"].keys() == written["models"].keys()

    # --save-presets: each trained model reloads with its tokenizer and
    # scores what the run recorded.
    from keras_3t import presets
    from keras_3t.evaluation import evaluate_model

    for name, objective in (("CLIP", "clip"), ("LiT", "lit"), ("3T", "3t")):
        model = presets.load(os.path.join(presets_dir, f"{objective}_tiny"))
        assert model.objective == objective
        tasks = demo.evaluation_tasks(model.preprocessor, demo.BUDGETS["quick"], seed=0)
        metrics = evaluate_model(model, zero_shot=tasks["zero_shot"])
        assert metrics["zero_shot_top1"] == pytest.approx(
            written["models"][name]["metrics"]["zero_shot_top1"], abs=1e-6
        )

    # An earlier run's folder is never overwritten without --overwrite.
    before = os.path.getmtime(os.path.join(output, "results.json"))
    with pytest.raises(SystemExit, match="--overwrite"):
        demo.main(["--quick", "--output", output])
    assert os.path.getmtime(os.path.join(output, "results.json")) == before


def test_cli_names_its_commands():
    with pytest.raises(SystemExit, match="keras-3t demo"):
        cli([])
    with pytest.raises(SystemExit, match="usage"):
        cli(["train"])


def test_default_output_folder_names_the_run():
    args = demo.parse_args(["--regime", "clean", "--mismatched", "--seed", "2"])
    assert demo.default_output(args) == os.path.join("runs", "demo_clean_mismatched_seed2")


def _fake_run(itr, alphas_itr):
    """A results.json-like dict with the given I→T R@1 per model and along α."""
    metrics = lambda value: {key: value for key in demo.COLUMNS}
    models = {name: {"metrics": metrics(value)} for name, value in itr.items()}
    for name in ("3T", "3T mismatched"):
        models[name]["alpha_sweep"] = [
            {"alpha": alpha, **metrics(value)} for alpha, value in zip(demo.ALPHAS, alphas_itr)
        ]
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
        (statement, key): 1 for statement, key, _ in checks}
    table = demo_seeds.markdown([holds, fails])
    assert "| CLIP | 0.300 ± 0.000 |" in table
    assert "| 3T | 0.300 ± 0.100 |" in table
    assert "| 3T α=0.50 | 0.325 ± 0.125 |" in table
    assert "- retrieval: 3T > LiT (T→I R@1): 1/2" in table


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="one backend is enough for the end-to-end run; torch is the fastest here",
)
def test_regime_map_trains_each_run_once_and_summarizes(tmp_path, monkeypatch):
    regime_map = load_script("recipes/regime_map.py")
    root = str(tmp_path / "map")
    arguments = ["--root", root, "--labelled", "150", "--pairs", "300", "--seeds", "0",
                 "--budget", "quick", "--pretrain-steps", "3"]
    summary = regime_map.main(arguments)
    assert sorted(os.listdir(os.path.join(root, "runs"))) == [
        "3t_L150_P300_seed0", "clip_P300_seed0", "lit_L150_P300_seed0"]
    assert os.path.isdir(os.path.join(root, "third_towers", "L150", "digit_classifier"))
    (cell,) = summary["cells"]
    assert (cell["labelled_digits"], cell["train_digits"], cell["seeds"]) == (150, 300, [0])
    runs = regime_map.load_runs(root)
    for baseline, objective in (("LiT", "lit"), ("CLIP", "clip")):
        for key, _ in regime_map.MAP_METRICS:
            expected = (runs["3t_L150_P300_seed0"]["metrics"][key]
                        - runs[regime_map.run_name(objective, 150, 300, 0)]["metrics"][key])
            assert cell["differences"][f"3T - {baseline} {key}"]["values"] == [
                pytest.approx(expected)]
    assert runs["lit_L150_P300_seed0"]["labelled_digits"] == 150
    assert runs["clip_P300_seed0"]["labelled_digits"] is None
    assert os.path.getsize(os.path.join(root, "regime_map.png")) > 0

    # Resumed: finished runs are reused, nothing is trained again.
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(regime_map, "train_run", refuse)
    assert regime_map.main(arguments)["cells"] == summary["cells"]


def test_regime_map_plan_runs_clip_once_per_pairs_and_seed_and_the_default_cell_first():
    regime_map = load_script("recipes/regime_map.py")
    plan = regime_map.planned_runs((150, 500), (300, 2500), seeds=(0, 1), default_cell_seeds=(0, 1, 2))
    names = [regime_map.run_name(*run) for run in plan]
    assert len(names) == len(set(names))
    assert names[:3] == ["clip_P2500_seed0", "lit_L500_P2500_seed0", "3t_L500_P2500_seed0"]
    assert sum(name.startswith("clip_") for name in names) == 2 * 2 + 1
    assert [name for name in names if name.endswith("seed2")] == [
        "clip_P2500_seed2", "lit_L500_P2500_seed2", "3t_L500_P2500_seed2"]
    # Every seed-0 run comes before any seed-1 run.
    assert max(i for i, n in enumerate(names) if n.endswith("seed0")) < min(
        i for i, n in enumerate(names) if n.endswith("seed1"))
    with pytest.raises(ValueError, match="pools would overlap"):
        regime_map.main(["--labelled", "1500", "--pairs", "3000", "--summarize-only"])
