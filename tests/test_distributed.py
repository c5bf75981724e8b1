"""Data parallelism: the contrastive negatives are the global batch."""

import json
import os
import subprocess
import sys

import keras
import pytest

CHECK = os.path.join(os.path.dirname(__file__), "distributed_jax_check.py")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution on simulated JAX devices")
def test_jax_data_parallel_matches_one_device_with_global_negatives():
    # A subprocess: the simulated device count is fixed when JAX starts.
    result = subprocess.run([sys.executable, CHECK], capture_output=True, text=True, check=True)
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["devices"] == 4
    # One global batch of 16 over 4 devices: the same loss as on one device...
    assert values["parallel_loss"] == pytest.approx(values["single_loss"], rel=1e-6)
    # ...which is not the mean of the four 4-example losses (each slice's
    # negatives would be only its own 3 other examples).
    assert abs(values["mean_of_per_device_losses"] - values["single_loss"]) > 0.1
    # And three fit steps end at the same weights, to float32 rounding.
    assert values["max_weight_difference"] < 1e-4
