"""benchmarks/feature_writing.py runs recipes/feature_shards.py with 1 and 2
processes, and both write every feature shard, identically."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.one_backend
def test_one_and_two_processes_write_the_same_feature_shards():
    benchmark = os.path.join(ROOT, "benchmarks", "feature_writing.py")
    tiny = ["--examples", "24", "--shards", "2", "--repeats", "1", "--threads", "pinned"]
    result = subprocess.run(
        [sys.executable, benchmark, *tiny], check=True, capture_output=True, text=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shards_written"] == {"pinned": {"1": [2], "2": [2]}}
    assert report["identical"] and report["max_abs_difference"] == 0
    assert [(row["threads"], row["measure"]) for row in report["rows"]] == [
        ("pinned", "command"),
        ("pinned", "writing"),
    ]
    for row in report["rows"]:
        assert all(rate > 0 for rate in row["examples_per_s"].values())
        assert row["ratio_2_over_1"] > 0
    assert "| pinned | writing |" in result.stdout
