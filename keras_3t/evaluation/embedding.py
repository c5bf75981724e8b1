"""Batched embedding of images and captions, with a progress bar."""

import math

import keras
import numpy as np

from keras_3t.combination import MAIN_PATH


def _batches(data, batch_size, key):
    """Yields batches of a NumPy array / dict of arrays, or of a dataset's batches."""
    if isinstance(data, dict) or isinstance(data, np.ndarray) or keras.ops.is_tensor(data):
        first = data[key] if isinstance(data, dict) else data
        count = len(first)
        if count == 0:
            raise ValueError(f"Nothing to embed: the {key} are empty.")
        num_batches = math.ceil(count / batch_size)

        def generate():
            for start in range(0, count, batch_size):
                if isinstance(data, dict):
                    yield {k: v[start : start + batch_size] for k, v in data.items()}
                else:
                    yield data[start : start + batch_size]

        return generate(), num_batches
    # A tf.data.Dataset (or any iterable) of batches, as model.fit takes.
    cardinality = getattr(data, "cardinality", None)
    num_batches = None
    if cardinality is not None:
        num_batches = int(cardinality())
        num_batches = num_batches if num_batches > 0 else None
    return iter(data), num_batches


def _embed(encode, data, key, batch_size, verbose):
    batches, num_batches = _batches(data, batch_size, key)
    progress = keras.utils.Progbar(num_batches, verbose=verbose, unit_name="batch")
    parts = []
    for step, batch in enumerate(batches):
        parts.append(keras.tree.map_structure(np.asarray, encode(batch)))
        progress.update(step + 1)
    if not parts:
        raise ValueError(f"Nothing to embed: the {key} dataset is empty.")
    return keras.tree.map_structure(lambda *rows: np.concatenate(rows), *parts)


def embed_images(model, images, alpha=1.0, batch_size=256, verbose=0):
    """L2-normalised image embeddings of a whole set, batch by batch.

    Args:
        model: a `ThreeTowerModel` (or any object with `encode_image`).
        images: a float array `(N, H, W, C)`, or a dataset yielding batches of
            images or of dicts with an `"images"` key.
        alpha: the convex-combination weight (see `encode_image`).
        batch_size: batch size for arrays.
        verbose: 1 shows a progress bar.

    Returns:
        A float32 NumPy array `(N, dim)`.
    """

    def encode(batch):
        if isinstance(batch, dict):
            batch = batch["images"]
        return model.encode_image(batch, alpha=alpha)

    return _embed(encode, images, "images", batch_size, verbose)


def embed_texts(model, texts, alpha=1.0, batch_size=256, verbose=0):
    """L2-normalised caption embeddings of a whole set, batch by batch.

    Args:
        model: a `ThreeTowerModel` (or any object with `encode_text`).
        texts: a dict `{"token_ids": (N, L), "padding_mask": (N, L)}` of
            arrays, or a dataset yielding such dicts as batches.
        alpha: the convex-combination weight (see `encode_text`).
        batch_size: batch size for arrays.
        verbose: 1 shows a progress bar.

    Returns:
        A float32 NumPy array `(N, dim)`.
    """

    def encode(batch):
        text = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
        return model.encode_text(text, alpha=alpha)

    return _embed(encode, texts, "token_ids", batch_size, verbose)


def embed_image_paths(model, images, paths=(MAIN_PATH,), batch_size=256, verbose=0):
    """Each path's L2-normalised image embeddings of a whole set, unweighted.

    Args:
        model: a `ThreeTowerModel` (for `("main",)` alone, any object with
            `encode_image`).
        images: as `embed_images` takes them.
        paths: path names (`model.path_names`): `"main"` and frozen towers.
        batch_size: batch size for arrays.
        verbose: 1 shows a progress bar.

    Returns:
        A dict path name → float32 NumPy array `(N, dim)`.
    """

    def encode(batch):
        if isinstance(batch, dict):
            batch = batch["images"]
        if tuple(paths) == (MAIN_PATH,):
            return {MAIN_PATH: model.encode_image(batch)}
        return model.encode_image_paths(batch, paths)

    return _embed(encode, images, "images", batch_size, verbose)


def embed_text_paths(model, texts, paths=(MAIN_PATH,), batch_size=256, verbose=0):
    """Each path's L2-normalised caption embeddings of a whole set, unweighted.

    Args:
        model: a `ThreeTowerModel` (for `("main",)` alone, any object with
            `encode_text`).
        texts: as `embed_texts` takes them.
        paths: path names (`model.path_names`): `"main"` and frozen towers.
        batch_size: batch size for arrays.
        verbose: 1 shows a progress bar.

    Returns:
        A dict path name → float32 NumPy array `(N, dim)`.
    """

    def encode(batch):
        text = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
        if tuple(paths) == (MAIN_PATH,):
            return {MAIN_PATH: model.encode_text(text)}
        return model.encode_text_paths(text, paths)

    return _embed(encode, texts, "token_ids", batch_size, verbose)
