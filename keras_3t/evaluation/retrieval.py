"""Image↔text retrieval recall@k, in blocks, with pessimistic ties."""

import functools
import warnings

import keras
import numpy as np
from keras import ops

from keras_3t.evaluation.checks import check_same_dim
from keras_3t.evaluation.checks import positive_integers

DEFAULT_KS = (1, 5, 10)


def _as_numpy_matrix(embeddings, name):
    if not isinstance(embeddings, np.ndarray):  # np.memmap is an ndarray
        embeddings = np.asarray(ops.convert_to_numpy(embeddings))
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (count, dim); got shape {embeddings.shape}."
        )
    return embeddings


def _check_text_to_image(text_to_image, num_texts, num_images):
    text_to_image = np.asarray(text_to_image)
    if text_to_image.shape != (num_texts,):
        raise ValueError(
            f"text_to_image must give one image index per caption: expected "
            f"shape ({num_texts},), got {text_to_image.shape}."
        )
    if not np.issubdtype(text_to_image.dtype, np.integer):
        raise ValueError(
            f"text_to_image must hold integer image indices; got dtype {text_to_image.dtype}."
        )
    bad = np.nonzero((text_to_image < 0) | (text_to_image >= num_images))[0]
    if bad.size:
        raise ValueError(
            f"text_to_image[{bad[0]}] = {text_to_image[bad[0]]} is not an image "
            f"index in [0, {num_images}) ({bad.size} caption(s) out of range)."
        )
    return text_to_image.astype(np.int64)


def blocks(count, block_size):
    """`(start, stop)` of consecutive blocks of `block_size` rows out of `count`.

    Example:
    >>> blocks(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return [(start, min(start + block_size, count)) for start in range(0, count, block_size)]


def compile_function(function):
    """Compiles a pure function of tensors written with `keras.ops`.

    jax.jit on JAX and an XLA tf.function on TensorFlow compile it once per
    input shape (one dispatch instead of one per operation); PyTorch runs it
    eagerly.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True, reduce_retracing=True)
    return function


def _count_block_eagerly(texts, images, text_threshold, image_threshold, own_columns):
    """Per caption and per image, how many scores of this block reach the
    threshold; and each caption's score at column `own_columns`."""
    scores = ops.matmul(texts, ops.transpose(images))
    with warnings.catch_warnings():
        # Keras's torch count_nonzero calls `.T` on its 1-D result.
        warnings.filterwarnings("ignore", message="The use of `x.T`")
        rows_ahead = ops.count_nonzero(scores >= text_threshold[:, None], axis=1)
        cols_ahead = ops.count_nonzero(scores >= image_threshold[None, :], axis=0)
    right = ops.take_along_axis(scores, own_columns[:, None], axis=1)[:, 0]
    return rows_ahead, cols_ahead, right


@functools.cache
def _count_block():
    # Compiled on first use (the backend is fixed by then). XLA on CPU still
    # writes each comparison mask out before counting it (~1.5x the product).
    return compile_function(_count_block_eagerly)


def retrieval_metrics(
    image_embeddings,
    text_embeddings,
    text_to_image,
    ks=DEFAULT_KS,
    block_size=4096,
    tie_tolerance=1e-5,
):
    """Image→text and text→image recall@k of paired embeddings.

    Scores are dot products (cosine similarities for L2-normalised
    embeddings). Caption j belongs to image `text_to_image[j]`; an image may
    have several captions (COCO has 5) or none (a distractor).

    - text→image, caption j: a hit at k if fewer than k *other* images score
      at least as high as its own image.
    - image→text, image i: a hit at k if fewer than k captions of *other*
      images score at least as high as its best caption. Images without a
      caption are left out of this average.

    Ties count against the model (a wrong item scoring the same as the right
    one ranks ahead of it), so the metric never flatters. Because float32
    matrix-product kernels round differently by about 1e-6 (d = 512), a
    wrong item within `tie_tolerance × ‖text‖ × ‖image‖` of the right one's
    score counts as a tie.

    The score matrix is never built whole: it is computed in blocks of
    `block_size × block_size` with `keras.ops` (on the backend's device).
    Peak memory beyond the inputs is about
    `16 × block_size² + 24 × (num_images + num_texts) + 8 × block_size × dim`
    bytes: ~0.35 GB for 10⁶ images × 10⁶ captions at d = 512 with the default
    block size. The inputs may be `np.memmap`s, read block by block.

    Args:
        image_embeddings: `(num_images, dim)` array or tensor.
        text_embeddings: `(num_texts, dim)` array or tensor.
        text_to_image: `(num_texts,)` ints, the image index of each caption.
        ks: the k of recall@k.
        block_size: rows and columns of one score block.
        tie_tolerance: relative width of a tie; 0 for exact comparison.

    Returns:
        A dict of floats: `image_to_text_r{k}` and `text_to_image_r{k}` for
        each k.

    Example:
    >>> import numpy as np
    >>> from keras_3t.evaluation import retrieval_metrics
    >>> images = np.eye(3, dtype="float32")
    >>> texts = np.eye(3, dtype="float32")[[0, 0, 1, 2]]  # image 0 has 2 captions
    >>> metrics = retrieval_metrics(images, texts, [0, 0, 1, 2], ks=(1,))
    >>> metrics["image_to_text_r1"], metrics["text_to_image_r1"]
    (1.0, 1.0)
    """
    images = _as_numpy_matrix(image_embeddings, "image_embeddings")
    texts = _as_numpy_matrix(text_embeddings, "text_embeddings")
    check_same_dim(images, texts, "Image and text")
    ks = positive_integers(ks, "ks")
    if block_size < 1:
        raise ValueError(f"block_size must be positive; got {block_size}.")
    num_images, num_texts = len(images), len(texts)
    text_to_image = _check_text_to_image(text_to_image, num_texts, num_images)

    # Each caption's score with its own image, and its tie threshold.
    true_scores = np.empty(num_texts, np.float32)
    tolerances = np.empty(num_texts, np.float32)
    for start, stop in blocks(num_texts, block_size):
        text_block = texts[start:stop].astype(np.float32)
        own_images = images[text_to_image[start:stop]].astype(np.float32)
        true_scores[start:stop] = np.einsum("ij,ij->i", text_block, own_images)
        tolerances[start:stop] = (
            tie_tolerance * np.linalg.norm(text_block, axis=1) * np.linalg.norm(own_images, axis=1)
        )
    text_thresholds = true_scores - tolerances
    # Each image's best caption, and its threshold (+inf: no caption).
    best_scores = np.full(num_images, -np.inf, np.float32)
    np.maximum.at(best_scores, text_to_image, true_scores)
    image_tolerances = np.zeros(num_images, np.float32)
    is_best = true_scores == best_scores[text_to_image]
    np.maximum.at(image_tolerances, text_to_image[is_best], tolerances[is_best])
    has_caption = np.isfinite(best_scores)
    image_thresholds = np.where(has_caption, best_scores - image_tolerances, np.inf)
    image_thresholds = image_thresholds.astype(np.float32)

    # Count, for every caption and image, the wrong items scoring ≥ threshold.
    texts_ahead = np.zeros(num_texts, np.int64)
    images_ahead = np.zeros(num_images, np.int64)
    image_blocks = blocks(num_images, block_size)
    for t_start, t_stop in blocks(num_texts, block_size):
        text_block = ops.convert_to_tensor(texts[t_start:t_stop], "float32")
        text_threshold = ops.convert_to_tensor(text_thresholds[t_start:t_stop])
        own = text_to_image[t_start:t_stop]
        for i_start, i_stop in image_blocks:
            local = own - i_start
            inside = (local >= 0) & (local < i_stop - i_start)
            rows_ahead, cols_ahead, right = _count_block()(
                text_block,
                ops.convert_to_tensor(images[i_start:i_stop], "float32"),
                text_threshold,
                ops.convert_to_tensor(image_thresholds[i_start:i_stop]),
                ops.convert_to_tensor(np.where(inside, local, 0).astype(np.int32)),
            )
            texts_ahead[t_start:t_stop] += ops.convert_to_numpy(rows_ahead)
            images_ahead[i_start:i_stop] += ops.convert_to_numpy(cols_ahead)
            # Take back the right pairs counted above: a caption and its own
            # image are never "ahead" of each other.
            rows = np.nonzero(inside)[0]
            if rows.size:
                right = ops.convert_to_numpy(right)[rows]
                texts_ahead[t_start + rows] -= right >= text_thresholds[t_start + rows]
                np.subtract.at(images_ahead, own[rows], right >= image_thresholds[own[rows]])

    metrics = {}
    for k in ks:
        metrics[f"image_to_text_r{k}"] = float(np.mean(images_ahead[has_caption] < k))
    for k in ks:
        metrics[f"text_to_image_r{k}"] = float(np.mean(texts_ahead < k))
    return metrics


def top_k_matches(queries, embeddings, k=5, block_size=65536):
    """The `k` rows of `embeddings` that score highest with each query.

    Scores are dot products, computed with `keras.ops` over blocks of
    `block_size` rows, so `embeddings` may be an `np.memmap` of any size:
    memory beyond the inputs is about `4 × num_queries × block_size` bytes
    plus the `k` best per query. Equal scores rank the earlier row first.

    Args:
        queries: `(num_queries, dim)` array or tensor.
        embeddings: `(count, dim)` array, tensor or memmap.
        k: how many rows per query (at most `count`).
        block_size: rows scored at once.

    Returns:
        `(scores, indices)`: float32 and int64 arrays `(num_queries,
        min(k, count))`, best first.

    Example:
    >>> import numpy as np
    >>> from keras_3t.evaluation import top_k_matches
    >>> rows = np.array([[1, 0], [0, 1], [0.6, 0.8]], "float32")
    >>> scores, indices = top_k_matches(np.array([[0, 1]], "float32"), rows, k=2)
    >>> indices.tolist(), scores.astype(float).round(2).tolist()
    ([[1, 2]], [[1.0, 0.8]])
    """
    queries = _as_numpy_matrix(queries, "queries").astype(np.float32)
    embeddings = _as_numpy_matrix(embeddings, "embeddings")
    check_same_dim(queries, embeddings, "Query and collection")
    (k,) = positive_integers([k], "k")
    if block_size < 1:
        raise ValueError(f"block_size must be positive; got {block_size}.")
    query_tensor = ops.convert_to_tensor(queries)
    best_scores = np.zeros((len(queries), 0), np.float32)
    best_indices = np.zeros((len(queries), 0), np.int64)
    for start, stop in blocks(len(embeddings), block_size):
        block = ops.convert_to_tensor(np.asarray(embeddings[start:stop], np.float32))
        scores, indices = ops.top_k(
            ops.matmul(query_tensor, ops.transpose(block)), min(k, stop - start)
        )
        scores = np.concatenate([best_scores, ops.convert_to_numpy(scores)], axis=1)
        indices = np.concatenate([best_indices, ops.convert_to_numpy(indices) + start], axis=1)
        order = np.lexsort((indices, -scores), axis=-1)[:, :k]
        best_scores = np.take_along_axis(scores, order, axis=1)
        best_indices = np.take_along_axis(indices, order, axis=1)
    return best_scores, best_indices
