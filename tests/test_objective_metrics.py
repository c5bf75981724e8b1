"""keras_3t.objective_metrics: one mean per objective value."""

import keras
import numpy as np
import pytest

from keras_3t.objective_metrics import ObjectiveMeans
from tests.helpers import to_numpy


def test_each_mean_equals_a_keras_mean_of_that_value_alone():
    names = ["loss", "loss_image_text", "logit_scale_image_text"]
    means = ObjectiveMeans(names)
    singles = {name: keras.metrics.Mean(name=name) for name in names}
    rng = np.random.default_rng(0)
    for _ in range(3):
        # Three rounds of five updates, each round ending with a reset.
        for _ in range(5):
            values = {name: np.float32(rng.normal() * 10) for name in names}
            means.update_state(values)
            for name, single in singles.items():
                single.update_state(values[name])
            result = means.result()
            assert list(result) == names
            totals = to_numpy(means.totals)
            for i, (name, single) in enumerate(singles.items()):
                # The same sums, equal; the division of a vector may round
                # differently under XLA (a multiplication by the reciprocal).
                assert totals[i] == to_numpy(single.total), name
                np.testing.assert_allclose(
                    to_numpy(result[name]), to_numpy(single.result()), rtol=2e-7, err_msg=name
                )
        means.reset_state()
        for single in singles.values():
            single.reset_state()
        assert all(float(to_numpy(value)) == 0.0 for value in means.result().values())


def test_a_missing_value_is_named_and_nothing_is_added():
    means = ObjectiveMeans(["loss", "loss_image_text"])
    with pytest.raises(ValueError, match=r"missing values for \['loss_image_text'\]"):
        means.update_state({"loss": 1.0})
    assert float(to_numpy(means.count)) == 0.0
    with pytest.raises(ValueError, match="at least one value name"):
        ObjectiveMeans([])


def test_config_round_trip():
    means = ObjectiveMeans(["loss", "loss_image_text"], name="objective")
    restored = ObjectiveMeans.from_config(means.get_config())
    assert restored.names == means.names
    assert restored.name == "objective"
