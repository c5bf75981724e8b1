"""keras_3t.model.input_checks: bad batches, alphas and tower sets are named."""

import numpy as np
import pytest

from keras_3t import ThreeTowerModel
from keras_3t.demo.toy import toy_batch
from tests.helpers import EMBEDDING_DIM
from tests.helpers import text_of
from tests.helpers import tiny_model


def _batch(size=4, **changes):
    batch = toy_batch(size, seed=0)
    batch.update(changes)
    return {k: v for k, v in batch.items() if v is not None}


@pytest.mark.parametrize(
    "batch, message",
    [
        (_batch(images=np.zeros((4, 16, 16), "float32")), "rank 3"),
        (_batch(images=np.zeros((4, 16, 16, 1), "float32")), "channel count"),
        (_batch(images=np.zeros((4, 12, 16, 3), "float32")), "height"),
        (_batch(padding_mask=None), "without a padding_mask"),
        (_batch(size=1), "at least 2 examples"),
        (
            _batch(token_ids=np.ones((4, 9), "int32"), padding_mask=np.ones((4, 9), bool)),
            "longer than the text tower's sequence_length",
        ),
        ([np.zeros((4, 16, 16, 3))], "must be dicts"),
    ],
    ids=["image-rank", "channels", "height", "no-mask", "batch-of-one", "too-long", "not-dict"],
)
def test_bad_batches_raise_a_clear_value_error(batch, message):
    model = tiny_model()
    model.compile()
    with pytest.raises(ValueError, match=message):
        model.compute_objective(batch)
    with pytest.raises(ValueError, match=message):
        model.train_on_batch(batch)


def test_alpha_is_checked():
    images = toy_batch(2, seed=0)["images"]
    model = tiny_model()
    for alpha in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]"):
            model.encode_image(images, alpha=alpha)
    for objective in ("lit", "clip"):
        with pytest.raises(ValueError, match="only a '3t' model has"):
            tiny_model(objective).encode_text(text_of(toy_batch(2, seed=0)), alpha=0.5)


def test_constructor_rejects_inconsistent_models():
    clip = tiny_model("clip")
    with pytest.raises(ValueError, match="needs a third_tower"):
        ThreeTowerModel(clip.image_tower, clip.text_tower, objective="3t")
    with pytest.raises(ValueError, match="objective must be one of"):
        ThreeTowerModel(clip.image_tower, clip.text_tower, objective="siglip")
    with pytest.raises(ValueError, match="pair_weights"):
        tiny_model(pair_weights=(1.0, -1.0, 0.0))
    with pytest.raises(ValueError, match="embedding size"):
        ThreeTowerModel(
            clip.image_tower,
            tiny_model("clip").text_tower.__class__(
                vocabulary_size=20,
                sequence_length=4,
                embedding_dim=EMBEDDING_DIM + 1,
                hidden_dim=8,
                num_layers=1,
                num_heads=1,
                intermediate_dim=8,
            ),
            objective="clip",
        )
