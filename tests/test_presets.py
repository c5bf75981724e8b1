"""keras_3t.presets: the public registry."""

import pytest

from keras_3t import presets
from tests.helpers import PAPER_PRESETS
from tests.helpers import TINY_PRESETS


def test_every_preset_is_described_with_its_parameter_counts():
    assert presets.names() == sorted(PAPER_PRESETS + TINY_PRESETS)
    assert presets.list() == presets.names()
    for name in presets.names():
        preset = presets.PRESETS[name]
        assert preset["description"] and preset["objective"] in ("3t", "lit", "clip")
        counts = preset["parameter_count"]
        assert counts["total"] >= counts["trainable"] > 0
        text = presets.describe(name)
        assert name in text and f"{counts['total'] / 1e6:.2f} M" in text


def test_an_unknown_name_lists_the_presets_and_the_closest():
    with pytest.raises(ValueError, match=r"Did you mean '3t_vitb16'\?.*clip_tiny"):
        presets.load("3t_vitb61")
    # A name close to none: the list, and no suggestion.
    with pytest.raises(ValueError) as error:
        presets.load("foo")
    assert str(error.value).startswith("Unknown preset 'foo' (and no preset folder at that path).")
    assert "Did you mean" not in str(error.value) and "3t_tiny" in str(error.value)
    with pytest.raises(ValueError, match="Unknown preset"):
        presets.describe("vit")
    with pytest.raises(ValueError, match="Unknown override"):
        presets.load("3t_tiny", weights=False, embeding_dim=3)
