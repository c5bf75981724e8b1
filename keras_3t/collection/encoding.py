"""How a collection's items and search queries are embedded: the model, its fingerprint, a batch."""

import hashlib
import json
import os

import numpy as np

from keras_3t.data.decoding import decoded_batches
from keras_3t.data.decoding import undecodable_reason


def model_and_reference(model):
    """`(model, reference)`: the model loaded if `model` names a preset, and how to load it again.

    The reference is a preset name, a preset folder's absolute path, or
    None for a model object.
    """
    if not isinstance(model, str):
        return model, None
    from keras_3t import presets

    reference = model if model in presets.names() else os.path.abspath(model)
    return presets.load(reference), reference


def model_fingerprint(model):
    """A SHA-256 of a model's weights and tokenizer: what its embeddings depend on."""
    import keras

    digest = hashlib.sha256(type(model).__name__.encode())
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight.value))
        digest.update(f"{value.shape} {value.dtype}".encode())
        digest.update(value.tobytes())
    if model.preprocessor is not None:
        config = keras.saving.serialize_keras_object(model.preprocessor)
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def embedding_function(model, kind, weights, batch_size=None):
    """A function from a list of `Item`s to `(embeddings, bad)`.

    `bad` lists `(index, kind, reason)` of the items that cannot be
    embedded; `embeddings` holds a row for each of the others, in order.
    The function's `dim` is the embedding size. With `batch_size`, every
    batch the model sees is padded to that many rows (copies of its first,
    dropped from the result), so the model runs at one shape: JAX compiles
    it once, not once per batch size.
    """
    import tensorflow as tf

    if kind == "captions":
        encode_text = _padded(lambda texts: model.encode_text(texts, weights), batch_size)

        def embed(items):
            bad = [
                (i, "empty_caption", "empty")
                for i, item in enumerate(items)
                if not item.caption.strip()
            ]
            good = [item.caption for item in items if item.caption.strip()]
            return (encode_text(good) if good else None), bad

        embed.dim = encode_text(["a"]).shape[-1]
        return embed

    converter = model.image_converter
    if converter.image_size is None:
        raise ValueError(
            "The model's image_converter keeps each image's size (image_size=None): "
            "give it the towers' image_size to embed a collection."
        )
    decode = decoded_batches(
        lambda image: converter(tf.image.convert_image_dtype(image, tf.float32))
    )
    encode_image = _padded(lambda images: model.encode_image(images, weights), batch_size)

    def embed(items):
        bad = [
            (i, "missing_file", "gone since the listing")
            for i, item in enumerate(items)
            if item.missing
        ]
        readable = [i for i, item in enumerate(items) if not item.missing]
        if not readable:
            return None, bad
        converted, ok = decode([items[i].image for i in readable])
        bad += [
            (i, "undecodable_image", undecodable_reason(items[i].image))
            for i, decoded in zip(readable, ok)
            if not decoded
        ]
        bad.sort()
        return (encode_image(converted[ok]) if ok.any() else None), bad

    embed.dim = encode_image(np.zeros((1, *converter.image_size, 3), "float32")).shape[-1]
    return embed


def _padded(encode, batch_size):
    """`encode` of a batch (list or array) padded to `batch_size` rows, less the padding."""
    if batch_size is None:
        return encode

    def run(batch):
        count = len(batch)
        if isinstance(batch, list):
            batch = batch + batch[:1] * (batch_size - count)
        else:
            batch = np.concatenate([batch, np.repeat(batch[:1], batch_size - count, axis=0)])
        return encode(batch)[:count]

    return run
