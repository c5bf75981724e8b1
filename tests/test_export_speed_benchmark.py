"""benchmarks/export_speed.py: its ratios pair sides within a round, and (slow) it runs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT
from tests.helpers import load_script

pytestmark = pytest.mark.one_backend


def test_ratios_are_medians_of_same_round_ratios_and_agreement_is_per_backend():
    export_speed = load_script("benchmarks/export_speed.py")
    # Baseline 1 s then 2 s; onnxruntime 0.5 s then 2 s: ratios 2 and 1.
    rounds = [
        {"keras_tensorflow": {"image_seconds": [1.0], "text_seconds": [1.0]},
         "onnxruntime": {"image_seconds": [0.5], "text_seconds": [1.0]}},
        {"keras_tensorflow": {"image_seconds": [2.0], "text_seconds": [1.0]},
         "onnxruntime": {"image_seconds": [2.0], "text_seconds": [1.0]}},
    ]  # fmt: skip
    ones = np.ones((2, 3), "float32")
    embeddings = {
        "keras_tensorflow": {"images": ones, "texts": ones},
        "onnxruntime": {"images": ones + 1e-6, "texts": ones - 3e-6},
    }
    summary = export_speed.summarize(rounds, embeddings, {"image": 10, "text": 10})
    assert summary["onnxruntime"]["image_over_keras_tensorflow"] == pytest.approx(1.5)
    assert summary["onnxruntime"]["images_per_s"] == pytest.approx(12.5)
    assert summary["onnxruntime"]["max_abs_difference"] == {
        "keras_tensorflow": pytest.approx(3e-6, rel=1e-2)
    }
    assert "| onnxruntime | 12 | 1.50 |" in export_speed.table(summary, "the command")


def test_a_timed_pass_embeds_every_batch_once():
    export_speed = load_script("benchmarks/export_speed.py")
    seen = []

    def embed(ids, mask):
        seen.append(len(ids))
        return ids * mask

    ids = np.arange(10)[:, None]
    embeddings, seconds = export_speed.timed_passes(embed, (ids, np.ones_like(ids)), 4, 2)
    assert seen == [4, 4, 2] * 3 and len(seconds) == 2
    np.testing.assert_array_equal(embeddings, ids)


@pytest.mark.slow
def test_the_benchmark_runs_and_reports(tmp_path):
    output = str(tmp_path / "export_speed.json")
    sides = ["--sides", "keras_tensorflow", "onnxruntime", "litert"]
    brief = ["--rounds", "1", "--repeats", "1", "--output", output]
    script = f"{ROOT}/benchmarks/export_speed.py"
    subprocess.run([sys.executable, script, *sides, *brief], check=True, capture_output=True)
    summary = json.load(open(output))["summary"]
    assert sorted(summary) == ["keras_tensorflow", "litert", "onnxruntime"]
    assert max(summary["onnxruntime"]["max_abs_difference"].values()) < 1e-5
    with pytest.raises(subprocess.CalledProcessError):  # never overwrites a report
        subprocess.run(
            [sys.executable, script, "--output", output], check=True, stderr=subprocess.DEVNULL
        )
