"""keras_3t.preprocessing: the caption tokenizer and the model's batches."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_3t import ThreeTowerModel
from keras_3t.preprocessing import RESERVED_TOKENS
from keras_3t.preprocessing import ThreeTowerPreprocessor
from keras_3t.preprocessing import caption_vocabulary
from tests.helpers import IMAGE_SIZE
from tests.helpers import SEQUENCE_LENGTH
from tests.helpers import snapshot
from tests.helpers import tiny_model
from tests.helpers import to_numpy
from tests.helpers import toy_preprocessor

CAPTIONS = ["a red square", "a blue circle", "green square", "a red circle"]


def _examples(num=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.uniform(size=(num, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"),
        "captions": np.array([CAPTIONS[i % len(CAPTIONS)] for i in range(num)]),
    }


def test_vocabulary_comes_from_the_captions():
    # WordPiece keeps a word whole once it recurs often enough.
    vocabulary = caption_vocabulary(CAPTIONS * 20, vocabulary_size=50)
    assert vocabulary[: len(RESERVED_TOKENS)] == list(RESERVED_TOKENS)
    words = {word for caption in CAPTIONS for word in caption.split()}
    assert words <= set(vocabulary)
    as_dataset = caption_vocabulary(tf.data.Dataset.from_tensor_slices(CAPTIONS * 20), 50)
    assert as_dataset == vocabulary
    with pytest.raises(ValueError, match="No captions"):
        caption_vocabulary([], 50)


def test_eager_output_is_the_models_batch_format_in_backend_tensors():
    preprocessor = toy_preprocessor()
    vocabulary = preprocessor.tokenizer.get_vocabulary()
    batch = preprocessor(
        {"images": _examples()["images"][:2], "captions": ["a red square", "RED blob"]}
    )
    assert sorted(batch) == ["images", "padding_mask", "token_ids"]
    if keras.backend.backend() != "tensorflow":
        assert not isinstance(batch["token_ids"], tf.Tensor)
    ids, mask = to_numpy(batch["token_ids"]), to_numpy(batch["padding_mask"])
    assert ids.shape == mask.shape == (2, SEQUENCE_LENGTH)
    assert ids.dtype == np.int32 and mask.dtype == bool
    assert to_numpy(batch["images"]).dtype == np.float32
    expected = [vocabulary.index(w) for w in ("a", "red", "square")]
    np.testing.assert_array_equal(ids[0], expected + [0] * (SEQUENCE_LENGTH - 3))
    # Lower-cased; an unknown word is [UNK] (id 1); padding is masked out.
    np.testing.assert_array_equal(ids[1][:2], [vocabulary.index("red"), 1])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 1, 0, 0]])
    # Captions only: text inputs for encode_text; too long: cut to length.
    text = preprocessor(["a red square a blue circle"])
    assert sorted(text) == ["padding_mask", "token_ids"]
    assert to_numpy(text["padding_mask"]).all()


def test_preprocessed_dataset_trains_the_model():
    preprocessor = toy_preprocessor()
    data = tf.data.Dataset.from_tensor_slices(_examples(16)).batch(8).map(preprocessor)
    batch = next(iter(data))
    assert sorted(batch) == ["images", "padding_mask", "token_ids"]
    model = tiny_model("clip", preprocessor=preprocessor)
    model.compile(learning_rate=1e-2)
    before = snapshot(model.trainable_variables)
    history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = snapshot(model.trainable_variables)
    assert any(not np.allclose(before[k], after[k]) for k in before)


def test_tokenizer_round_trips_through_keras_saving(tmp_path):
    preprocessor = toy_preprocessor()
    model = tiny_model("clip", preprocessor=preprocessor)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ThreeTowerModel)
    assert isinstance(restored.preprocessor, ThreeTowerPreprocessor)
    assert (
        restored.preprocessor.tokenizer.get_vocabulary() == preprocessor.tokenizer.get_vocabulary()
    )
    texts = ["a blue square", "green circle"]
    np.testing.assert_array_equal(
        to_numpy(restored.preprocessor(texts)["token_ids"]),
        to_numpy(preprocessor(texts)["token_ids"]),
    )
    np.testing.assert_allclose(
        to_numpy(restored.encode_text(restored.preprocessor(texts))),
        to_numpy(model.encode_text(preprocessor(texts))),
        atol=1e-6,
    )


def test_empty_captions_and_bad_lengths_are_named():
    preprocessor = toy_preprocessor()
    with pytest.raises(ValueError, match="Empty caption at index 1"):
        preprocessor(["a red square", "  "])
    data = tf.data.Dataset.from_tensor_slices(["a red square", ""]).batch(2).map(preprocessor)
    with pytest.raises(tf.errors.InvalidArgumentError, match="caption has no tokens"):
        next(iter(data))
    with pytest.raises(ValueError, match="sequence_length must be a positive int"):
        ThreeTowerPreprocessor(preprocessor.tokenizer, 0)


def test_encode_text_takes_caption_strings_through_the_preprocessor():
    preprocessor = toy_preprocessor()
    model = tiny_model("3t", preprocessor=preprocessor)
    texts = ["a red square", "green circle"]
    for alpha in (1.0, 0.5):
        np.testing.assert_allclose(
            to_numpy(model.encode_text(texts, alpha=alpha)),
            to_numpy(model.encode_text(preprocessor(texts), alpha=alpha)),
            atol=1e-6,
        )
    assert to_numpy(model.encode_text("a red square")).shape == (1, 16)
    with pytest.raises(ValueError, match="no preprocessor"):
        tiny_model("clip").encode_text(texts)
