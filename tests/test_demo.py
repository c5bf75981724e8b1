import json
import os

import keras
import pytest

from keras_3t import demo
from keras_3t.__main__ import main as cli


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="one backend is enough for the end-to-end run; torch is the fastest here",
)
def test_quick_demo_writes_results_for_all_three_models(tmp_path):
    output = str(tmp_path / "run")
    summary = demo.main(["--quick", "--output", output])
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
