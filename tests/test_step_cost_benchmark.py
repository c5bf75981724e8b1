"""benchmarks/step_cost.py measures the compiled steps of the tiny presets."""

import json
import os
import subprocess
import sys

import keras
import pytest

from tests.helpers import ROOT

STEP_COST = os.path.join(ROOT, "benchmarks", "step_cost.py")
BATCH = 8


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="compiles JAX programs")
def test_step_cost_benchmark_measures_what_each_objective_skips():
    result = subprocess.run(
        [
            sys.executable,
            STEP_COST,
            *("--presets", "3t_tiny", "clip_tiny", "lit_tiny"),
            *("--batch-size", str(BATCH)),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "| 3t_tiny | cached | 8 |" in result.stdout
    steps = {(row["preset"], row["step"]): row for row in report["rows"]}
    assert set(steps) == {
        ("3t_tiny", "live"),
        ("3t_tiny", "cached"),
        ("clip_tiny", "live"),
        ("lit_tiny", "live"),
    }
    for row in steps.values():
        assert row["step_flops"] > 0 and row["temp_bytes"] > 0
        assert row["flops_per_example"] * BATCH == row["step_flops"]
        # The state is donated: the new weights reuse the old ones' buffers.
        assert row["alias_bytes"] > 0
    flops = {key: row["step_flops"] for key, row in steps.items()}
    forward = report["forward_flops_per_example"]
    # Cached features skip exactly the frozen third tower's forward pass.
    assert flops[("3t_tiny", "live")] - flops[("3t_tiny", "cached")] == pytest.approx(
        BATCH * forward["3t_tiny"]["third"], rel=0.01
    )
    assert flops[("clip_tiny", "live")] < flops[("3t_tiny", "live")]
    assert steps[("3t_tiny", "live")]["flops_over_clip"] > 1
    # LiT's image tower (a ResNet here, not CLIP's ViT) runs forward only:
    # without that forward pass its step costs less than CLIP's without
    # CLIP's image forward pass, which still leaves the image backward pass.
    assert flops[("lit_tiny", "live")] - BATCH * forward["lit_tiny"]["image"] < (
        flops[("clip_tiny", "live")] - BATCH * forward["clip_tiny"]["image"]
    )
    assert (
        steps[("lit_tiny", "live")]["frozen_params"]
        > steps[("lit_tiny", "live")]["trainable_params"]
    )
