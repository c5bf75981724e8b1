"""keras_3t.towers.text_tower: padding, pooling and causal attention."""

import numpy as np
import pytest

from keras_3t.demo.toy import toy_batch
from tests.helpers import IMAGE_SIZE
from tests.helpers import run_round_trip_test
from tests.helpers import text_of
from tests.helpers import tiny_text_tower
from tests.helpers import to_numpy


def test_causal_text_tower_ignores_later_tokens():
    batch = toy_batch(2, image_size=IMAGE_SIZE, seed=0)
    changed = {key: np.array(value) for key, value in batch.items()}
    changed["token_ids"][:, 1:] = (changed["token_ids"][:, 1:] + 1) % 10 + 2
    for causal in (True, False):
        tower = tiny_text_tower(causal=causal, pooling="first")
        text = {key: batch[key] for key in ("token_ids", "padding_mask")}
        other = {key: changed[key] for key in ("token_ids", "padding_mask")}
        same = np.allclose(
            to_numpy(tower(text)["embedding"]), to_numpy(tower(other)["embedding"]), atol=1e-6
        )
        assert same == causal
    assert tiny_text_tower(causal=True).get_config()["causal"] is True


@pytest.mark.parametrize("pooling", ["mean", "last", "first"])
def test_text_tower_ignores_padding_tokens(pooling):
    tower = tiny_text_tower(pooling=pooling)
    batch = text_of(toy_batch(3, seed=0))
    changed = dict(batch, token_ids=np.where(batch["padding_mask"], batch["token_ids"], 7))
    np.testing.assert_allclose(
        to_numpy(tower(batch)["embedding"]), to_numpy(tower(changed)["embedding"]), atol=1e-5
    )


def test_text_tower_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="Unknown text pooling"):
        tiny_text_tower(pooling="max")


def test_text_tower_round_trips(tmp_path):
    run_round_trip_test(tiny_text_tower(pooling="last"), text_of(toy_batch(2, seed=0)), tmp_path)
