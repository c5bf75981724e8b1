"""Captions and images → the model's batch: a tokenizer learned from captions
and a keras-hub preprocessor that runs in `tf.data` on every backend."""

import keras
import keras_hub
import numpy as np
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_3t.console import raised_as_is
from keras_3t.image_converter import to_unit_range

# Ids 0 and 1: padding (the packer's pad value) and unknown word pieces.
RESERVED_TOKENS = ("[PAD]", "[UNK]")
EMPTY_CAPTION = (
    "A caption has no tokens after tokenization; every image needs a caption "
    "with at least one word."
)


def caption_texts(captions):
    """Captions as a list of `str`.

    Args:
        captions: strings (a list, a NumPy array or a `tf.data.Dataset` of
            scalar strings); bytes are read as UTF-8, invalid bytes replaced.

    Example:
    >>> import numpy as np
    >>> from keras_3t.preprocessing import caption_texts
    >>> caption_texts(np.array([b"a 3 above a 7", "café".encode()]))
    ['a 3 above a 7', 'café']
    """
    import tensorflow as tf

    if isinstance(captions, tf.data.Dataset):
        captions = list(captions.as_numpy_iterator())
    return [
        caption.decode("utf-8", "replace") if isinstance(caption, bytes) else str(caption)
        for caption in np.asarray(captions, dtype=object).reshape(-1)
    ]


def caption_vocabulary(captions, vocabulary_size=1000):
    """A WordPiece vocabulary computed from captions (lower-cased).

    keras-hub's `compute_word_piece_vocabulary` learns it: every character
    seen is a piece, and a word or part of a word becomes one when it occurs
    at least a threshold number of times, which the learner searches (10 at
    the least) to fill `vocabulary_size`; rarer words are spelled in pieces.
    So few captions give fewer pieces than `vocabulary_size`.

    Args:
        captions: strings (a list, a NumPy array or a `tf.data.Dataset`;
            bytes are read as UTF-8).
        vocabulary_size: int, the most word pieces to keep, reserved tokens
            included.

    Returns:
        A list of word pieces, `"[PAD]"` first and `"[UNK]"` second.

    Example:
    >>> from keras_3t.preprocessing import caption_vocabulary
    >>> caption_vocabulary(["a 3 above a 7", "a 7 on the left"], 100)[:4]
    ['[PAD]', '[UNK]', '3', '7']
    """
    import tensorflow as tf

    if isinstance(captions, tf.data.Dataset):
        data = captions
    else:
        captions = caption_texts(captions)
        if not captions:
            raise ValueError("No captions to compute a vocabulary from.")
        data = tf.data.Dataset.from_tensor_slices(captions)
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        data,
        vocabulary_size,
        lowercase=True,
        reserved_tokens=list(RESERVED_TOKENS),
    )


def caption_tokenizer(vocabulary):
    """A keras-hub `WordPieceTokenizer` over `vocabulary` (lower-cases input).

    Example:
    >>> from keras_3t.preprocessing import caption_tokenizer
    >>> tokenizer = caption_tokenizer(["[PAD]", "[UNK]", "a", "3", "above"])
    >>> [int(i) for i in tokenizer("A 3 above a 9")]
    [2, 3, 4, 2, 1]
    """
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=list(vocabulary), lowercase=True, oov_token="[UNK]"
    )


@keras.saving.register_keras_serializable(package="keras_3t")
class ThreeTowerPreprocessor(keras_hub.models.Preprocessor):
    """Maps `{"images", "captions"}` to a `ThreeTowerModel` batch.

    Captions are tokenized and right-padded (or cut) to `sequence_length`;
    images become float32 in [0, 1] (integer images are scaled: uint8 / 255;
    resizing is `ThreeTowerModel.image_converter`'s job). The output is
    `{"images", "token_ids", "padding_mask"}` (without `"images"` when the input has none, or when
    it is a plain list of captions). Like every keras-hub preprocessor it
    runs inside `tf.data.Dataset.map` whatever the Keras backend, and on
    Python data eagerly. The tokenizer is saved with the model (its
    vocabulary is a `.keras` asset).

    Args:
        tokenizer: a keras-hub tokenizer, e.g. from `caption_tokenizer`.
        sequence_length: int, the padded caption length (the text tower's
            `sequence_length`).

    Example:
    >>> from keras_3t.preprocessing import ThreeTowerPreprocessor, caption_tokenizer
    >>> preprocessor = ThreeTowerPreprocessor(
    ...     caption_tokenizer(["[PAD]", "[UNK]", "a", "3", "above", "7"]), 6)
    >>> batch = preprocessor({"images": np.zeros((1, 8, 8, 3)),
    ...                       "captions": ["a 3 above a 7"]})
    >>> [int(i) for i in batch["token_ids"][0]], sorted(batch)
    ([2, 3, 4, 2, 5, 0], ['images', 'padding_mask', 'token_ids'])
    """

    def __init__(self, tokenizer, sequence_length, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(sequence_length, int) or sequence_length < 1:
            raise ValueError(f"sequence_length must be a positive int; got {sequence_length!r}.")
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.packer = None

    def build(self, input_shape):
        # Built late so that a restored tokenizer has its vocabulary loaded.
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=self.sequence_length,
            pad_value=self.tokenizer.token_to_id(RESERVED_TOKENS[0]),
            return_padding_mask=True,
        )
        self.built = True

    @preprocessing_function
    def call(self, x):
        import tensorflow as tf

        captions = x["captions"] if isinstance(x, dict) else x
        token_ids, padding_mask = self.packer(self.tokenizer(captions))
        lengths = tf.reduce_sum(tf.cast(padding_mask, "int32"), axis=-1)
        if tf.executing_eagerly():
            empty = np.flatnonzero(np.asarray(lengths) == 0)
            if len(empty):
                raise raised_as_is(
                    ValueError(
                        f"{EMPTY_CAPTION} Empty caption at index {int(empty[0])}: "
                        f"{caption_texts(captions)[empty[0]]!r}."
                    )
                )
        else:  # Inside tf.data or tf.function: a graph assertion.
            tf.debugging.assert_positive(lengths, message=EMPTY_CAPTION)
        batch = {"token_ids": token_ids, "padding_mask": padding_mask}
        if isinstance(x, dict) and x.get("images") is not None:
            batch["images"] = to_unit_range(tf.convert_to_tensor(x["images"]))
        return batch

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length})
        return config
