"""How well a tokenizer's vocabulary covers captions, and keras-hub tokenizer presets.

A vocabulary learned from other captions (a preset's) can fit a user's
captions badly: WordPiece turns a word holding a character it lacks into the
unknown token, and spells a word it lacks piece by piece, down to one
character per piece. `vocabulary_coverage` measures both; `recipes/train.py`
warns when either passes `POOR_COVERAGE`. `tokenizer_from_preset` loads a
keras-hub tokenizer (BERT's, say) to train with instead.
"""

import collections
import json
import os
import re
import typing

import keras
import keras_hub

from keras_3t.preprocessing import RESERVED_TOKENS
from keras_3t.preprocessing import caption_texts
from keras_3t.towers.keras_hub_presets import WeightsUnavailableError

# The share of words, unknown or split into single characters, past which a
# vocabulary covers captions poorly: a few rare words are normal, one in
# twenty is not.
POOR_COVERAGE = 0.05
# keras-hub's file for a saved tokenizer's config (its vocabulary is in assets/).
TOKENIZER_FILE = "tokenizer.json"
# Runs of letters and digits: the words WordPiece keeps whole before splitting.
WORD = re.compile(r"\w+")


class VocabularyCoverage(typing.NamedTuple):
    """How a tokenizer splits the words of some captions (`vocabulary_coverage`).

    Both shares are of all the words, every occurrence counted.

    Attributes:
        words: int, the number of words measured.
        unknown: float, the share of words that become the unknown token.
        single_characters: float, the share of words that have two or more
            characters and are split into one piece per character.

    Example:
    >>> from keras_3t.vocabulary import VocabularyCoverage
    >>> coverage = VocabularyCoverage(words=40, unknown=0.0, single_characters=0.1)
    >>> print(coverage)
    0.0% of 40 words are unknown and 10.0% are split into single characters
    >>> coverage.is_poor(), coverage.is_poor(threshold=0.2)
    (True, False)
    """

    words: int
    unknown: float
    single_characters: float

    def is_poor(self, threshold=POOR_COVERAGE):
        """Whether either share is over `threshold`.

        Args:
            threshold: float, the largest share that is not poor
                (`POOR_COVERAGE`, 5 %, by default).
        """
        return self.unknown > threshold or self.single_characters > threshold

    def __str__(self):
        return (
            f"{self.unknown:.1%} of {self.words:,} words are unknown and "
            f"{self.single_characters:.1%} are split into single characters"
        )


def vocabulary_coverage(tokenizer, captions):
    """How well `tokenizer`'s vocabulary covers the words of `captions`.

    Each distinct word (a run of letters and digits) is tokenized once and
    counted as often as it occurs. It is unknown when it becomes the
    tokenizer's `oov_token`, and split into single characters when it has
    two or more characters and each of its pieces is one character
    (WordPiece's `##` suffix marker not counted). Tokenizing runs in
    `tf.data`, as keras-hub's tokenizers do, whatever the Keras backend.

    Args:
        tokenizer: a keras-hub tokenizer, e.g. `model.preprocessor.tokenizer`.
        captions: strings (a list, a NumPy array or a `tf.data.Dataset`;
            bytes are read as UTF-8).

    Returns:
        A `VocabularyCoverage`.

    Example:
    >>> from keras_3t.preprocessing import caption_tokenizer
    >>> from keras_3t.vocabulary import vocabulary_coverage
    >>> tokenizer = caption_tokenizer(
    ...     ["[PAD]", "[UNK]", "a", "cat", "d", "o", "g", "##o", "##g"])
    >>> coverage = vocabulary_coverage(tokenizer, ["a cat", "a dog", "a fox"])
    >>> print(coverage)
    16.7% of 6 words are unknown and 16.7% are split into single characters
    >>> coverage.is_poor()
    True
    """
    import tensorflow as tf

    captions = caption_texts(captions)
    counts = collections.Counter(word for caption in captions for word in WORD.findall(caption))
    if not counts:
        raise ValueError("The captions have no words to measure a vocabulary's coverage on.")
    words = list(counts)
    # Inside tf.data every backend gets TensorFlow's ragged ids back.
    ids = next(iter(tf.data.Dataset.from_tensors(words).map(tokenizer))).to_list()
    vocabulary = tokenizer.get_vocabulary()
    oov_token = getattr(tokenizer, "oov_token", None)
    suffix = getattr(tokenizer, "suffix_indicator", None)

    def character(piece):
        if suffix and piece.startswith(suffix):
            piece = piece[len(suffix) :]
        return len(piece) == 1

    unknown = single_characters = 0
    for word, word_ids in zip(words, ids):
        pieces = [vocabulary[i] for i in word_ids]
        if oov_token in pieces:
            unknown += counts[word]
        elif len(word) > 1 and all(character(piece) for piece in pieces):
            single_characters += counts[word]
    total = sum(counts.values())
    return VocabularyCoverage(total, unknown / total, single_characters / total)


def tokenizer_from_preset(preset):
    """A keras-hub tokenizer from a preset name, a `kaggle://` or `hf://` handle, or a folder.

    A folder holds `tokenizer.json` and `assets/tokenizer/`, as keras-hub's
    `tokenizer.save_to_preset(folder)` writes them (a keras-hub model
    preset folder has them too), and loads without network access; a name
    or a handle is fetched by keras-hub. The tokenizer must have the
    `"[PAD]"` token that `ThreeTowerPreprocessor` pads with, as WordPiece
    ones (BERT's) do.

    Args:
        preset: a name in `keras_hub.tokenizers.Tokenizer.presets` (e.g.
            `"bert_base_en_uncased"`), a handle, or a folder.

    Returns:
        A keras-hub tokenizer.

    Raises:
        keras_3t.presets.WeightsUnavailableError: the preset could not be
            fetched (offline, say); the message says how to make a folder.
        ValueError: `preset` is no tokenizer preset, or its tokenizer has
            no `"[PAD]"`.

    Example:
    >>> import tempfile
    >>> from keras_3t.preprocessing import caption_tokenizer
    >>> from keras_3t.vocabulary import tokenizer_from_preset
    >>> folder = tempfile.mkdtemp()
    >>> caption_tokenizer(["[PAD]", "[UNK]", "a", "dog"]).save_to_preset(folder)
    >>> tokenizer_from_preset(folder).vocabulary_size()
    4
    """
    preset = os.fspath(preset)
    if os.path.isdir(preset):
        tokenizer = _read_tokenizer(preset)
    elif "://" in preset or preset in keras_hub.tokenizers.Tokenizer.presets:
        try:
            tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
        except OSError as error:
            raise WeightsUnavailableError(
                f"Could not fetch the keras-hub tokenizer preset {preset!r} "
                f"({type(error).__name__}: {error}). Without network access, save it once "
                f"where there is (keras_hub.tokenizers.Tokenizer.from_preset({preset!r})"
                ".save_to_preset(folder)) and pass that folder."
            ) from None
    else:
        raise ValueError(
            f"{preset!r} is neither a keras-hub tokenizer preset name "
            "(keras_hub.tokenizers.Tokenizer.presets), a kaggle:// or hf:// handle, nor a "
            "folder that exists."
        )
    if RESERVED_TOKENS[0] not in tokenizer.get_vocabulary():
        raise ValueError(
            f"The tokenizer of {preset!r} ({type(tokenizer).__name__}) has no "
            f"{RESERVED_TOKENS[0]!r} token, which keras-3t pads captions with; name a "
            "WordPiece tokenizer such as BERT's (bert_base_en_uncased)."
        )
    return tokenizer


def _read_tokenizer(folder):
    path = os.path.join(folder, TOKENIZER_FILE)
    if not os.path.isfile(path):
        raise ValueError(
            f"{folder} holds no keras-hub tokenizer: it has no {TOKENIZER_FILE} "
            "(write one with tokenizer.save_to_preset(folder))."
        )
    try:
        with open(path, encoding="utf-8") as file:
            tokenizer = keras.saving.deserialize_keras_object(json.load(file))
        tokenizer.load_preset_assets(folder)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"Could not restore the tokenizer saved in {folder}: {error}") from None
    return tokenizer
