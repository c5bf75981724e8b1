"""keras_3t.vocabulary: a tokenizer's coverage of captions and keras-hub
tokenizer presets; recipes/train.py trains a user's own captions with a
vocabulary built from them."""

import keras
import keras_hub
import numpy as np
import pytest
import requests
import tensorflow as tf

from keras_3t import presets
from keras_3t.demo import digit_scenes
from keras_3t.preprocessing import caption_tokenizer
from keras_3t.vocabulary import POOR_COVERAGE
from keras_3t.vocabulary import VocabularyCoverage
from keras_3t.vocabulary import tokenizer_from_preset
from keras_3t.vocabulary import vocabulary_coverage
from tests.data.caption_files import OWN_CAPTIONS
from tests.data.caption_files import write_own_captions
from tests.helpers import load_script


def pieces(tokenizer, text):
    return [tokenizer.id_to_token(int(i)) for i in tokenizer(text)]


def test_coverage_counts_unknown_words_and_words_split_into_single_characters():
    tokenizer = caption_tokenizer(["[PAD]", "[UNK]", "a", "cat", "d", "o", "g", "##o", "##g"])
    # "fox" has an f: unknown. "dog" is d ##o ##g. "a" is one character
    # whole, "cat" a piece of its own.
    captions = ["a cat", "A dog!", "a fox", "a dog"]
    coverage = vocabulary_coverage(tokenizer, captions)
    assert coverage == VocabularyCoverage(words=8, unknown=1 / 8, single_characters=2 / 8)
    assert coverage.is_poor() and not coverage.is_poor(threshold=0.25)
    assert str(coverage) == (
        "12.5% of 8 words are unknown and 25.0% are split into single characters"
    )
    assert vocabulary_coverage(tokenizer, tf.data.Dataset.from_tensor_slices(captions)) == coverage
    assert vocabulary_coverage(tokenizer, np.array([c.encode() for c in captions])) == coverage
    with pytest.raises(ValueError, match="no words"):
        vocabulary_coverage(tokenizer, ["", "?!"])


def test_the_digit_vocabulary_covers_digit_captions_but_not_ordinary_words():
    tokenizer = presets.load("3t_tiny").preprocessor.tokenizer
    digits = digit_scenes.make_scenes(64, "train", "clean", seed=0)["captions"]
    assert not vocabulary_coverage(tokenizer, digits).is_poor()
    coverage = vocabulary_coverage(tokenizer, OWN_CAPTIONS)
    assert coverage.unknown > POOR_COVERAGE and coverage.single_characters > POOR_COVERAGE
    assert pieces(tokenizer, "a lazy fox") == ["a", "[UNK]", "[UNK]"]
    assert pieces(tokenizer, "a brown") == ["a", "b", "##r", "##o", "##w", "##n"]


def test_a_tokenizer_preset_loads_from_a_folder_and_offline_says_how_to_make_one(
    tmp_path, monkeypatch
):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fox", "jumps"]
    keras_hub.tokenizers.BertTokenizer(vocabulary=vocabulary, lowercase=True).save_to_preset(
        str(tmp_path / "bert")
    )
    tokenizer = tokenizer_from_preset(tmp_path / "bert")
    assert type(tokenizer).__name__ == "BertTokenizer"
    assert pieces(tokenizer, "A fox jumps") == ["a", "fox", "jumps"]

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.tokenizers.Tokenizer, "from_preset", offline)
    with pytest.raises(presets.WeightsUnavailableError) as info:
        tokenizer_from_preset("bert_tiny_en_uncased")
    assert str(info.value).startswith(
        "Could not fetch the keras-hub tokenizer preset 'bert_tiny_en_uncased' (ConnectionError:"
    )
    assert ".save_to_preset(folder)) and pass that folder." in str(info.value)
    with pytest.raises(ValueError, match="neither a keras-hub tokenizer preset name"):
        tokenizer_from_preset("bert_tiny_en_uncase")
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        tokenizer_from_preset(tmp_path)
    keras_hub.tokenizers.WordPieceTokenizer(vocabulary=["[UNK]", "a"]).save_to_preset(
        str(tmp_path / "no_pad")
    )
    with pytest.raises(ValueError, match=r"has no '\[PAD\]' token"):
        tokenizer_from_preset(tmp_path / "no_pad")


def test_own_captions_train_with_a_vocabulary_built_from_them_and_saved_with_the_model(tmp_path):
    captions = write_own_captions(str(tmp_path))
    output = tmp_path / "run"
    recipe = load_script("recipes/train.py")
    history = recipe.main(
        ["--preset", "3t_tiny", "--data", captions, "--image-root", str(tmp_path),
         "--batch-size", "4", "--steps-per-epoch", "1", "--output", str(output)]
    )  # fmt: skip
    assert np.isfinite(history["loss"]).all()

    model = presets.load(str(output / "preset"))
    tokenizer = model.preprocessor.tokenizer
    assert pieces(tokenizer, "A quick fox jumps") == ["a", "quick", "fox", "jumps"]
    assert pieces(tokenizer, "a fuzzy yak kicks") == ["a", "fuzzy", "yak", "kicks"]
    assert vocabulary_coverage(tokenizer, OWN_CAPTIONS) == (256, 0.0, 0.0)
    assert model.text_tower.vocabulary_size == tokenizer.vocabulary_size() < 100
    assert tuple(keras.ops.shape(model.encode_text(["a lazy zebra jogs"]))) == (1, 64)
