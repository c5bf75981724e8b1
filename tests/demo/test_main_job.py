"""keras_3t.demo.main_job: the regime map's plan and its summary."""

import os

import keras
import pytest

from keras_3t.demo import main_job
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
