"""Decoding a source example's image to float32 RGB in [0, 1], on `tf.data`.

The input pipeline (`make_dataset`, `retrieval_task`) and the third-tower
cache (`write_third_tower_cache`) decode with `decode_image`, so the cached
features describe the same pixels the towers see.
"""

from keras_3t.data.bad_data import assert_with_lazy_message
from keras_3t.data.bad_data import bad_example_message

# Image formats `tf.io.decode_image` reads, by their first bytes.
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF")
# A 1×1 black PNG: what the decode check falls back to when an image fails.
_FALLBACK_IMAGE = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c49444154089963606060000000040001a30a15e30000000049454e44ae426082"
)


def decode_image(image, image_id, on_bad_data, source=None):
    """Decodes an image to float32 RGB in [0, 1].

    Encoded images (strings) decode with `tf.io.decode_image`. With
    `on_bad_data="raise"` an image that does not decode, for whatever
    reason (unknown format, truncated, corrupt), fails an assertion whose
    message names `source` (e.g. `"captions.csv, line 9: images/x.jpg"`)
    and `image_id`; with `"skip"` the decode's own error is left to the
    caller's `ignore_errors`. Decoded uint8 images are converted as they
    are, grayscale ones `(height, width, 1)` to RGB.

    Args:
        image: a string tensor of encoded JPEG, PNG, GIF, BMP or WebP bytes, or a
            decoded uint8 `(height, width, 3)` or `(height, width, 1)` image.
        image_id: the example's `image_id`, named in the error.
        on_bad_data: `"raise"` or `"skip"`.
        source: a string tensor saying where the example was read, named in
            the error, or None.

    Returns:
        A float32 `(height, width, 3)` tensor in [0, 1].

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> from keras_3t.data.decoding import decode_image
    >>> encoded = tf.io.encode_png(np.full((2, 3, 3), 255, "uint8"))
    >>> image = decode_image(encoded, image_id=0, on_bad_data="raise")
    >>> image.dtype.name, tuple(image.shape), float(image[0, 0, 0])
    ('float32', (2, 3, 3), 1.0)
    """
    import tensorflow as tf

    if image.dtype == tf.string:
        if on_bad_data == "raise":
            image = _decode_or_fail(image, image_id, source)
        else:
            image = _decode_encoded(image)
    elif image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return tf.image.convert_image_dtype(image, tf.float32)


def _decode_encoded(image):
    import tensorflow as tf

    return tf.io.decode_image(image, channels=3, expand_animations=False)


def decode_or_fallback(encoded):
    """`(uint8 image, ok)`: the decoded image, or a black 1×1 one and False.

    The decode runs in a small dataset of two images, this one and a valid
    1×1 fallback, each flagged by whether it is this one: errors are
    ignored there, so the first element left is this image decoded, or the
    fallback if it failed. Any decode error is caught this way (an unknown
    format, a truncated or corrupt file: whatever `tf.io.decode_image`
    refuses), in the graph, and only the decode's. The fallback is decoded
    only when this image fails.
    """
    import tensorflow as tf

    decoded = (
        tf.data.Dataset.from_tensor_slices((tf.stack([encoded, _FALLBACK_IMAGE]), [True, False]))
        .map(lambda data, first: (_decode_encoded(data), first))
        .ignore_errors()
        .take(1)
    )
    return decoded.get_single_element()


def decoded_batches(convert):
    """A function from a list of encoded images to `(converted images, ok)`, in NumPy.

    Each image is decoded with `decode_or_fallback` (to uint8 RGB) and
    passed through `convert`, a TensorFlow function of one image to a
    float32 image of a fixed size; `ok[i]` says whether image `i` decoded
    (where it did not, its row holds the converted fallback). The decoding
    runs as one compiled TensorFlow graph per batch.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> from keras_3t.data.decoding import decoded_batches
    >>> decode = decoded_batches(lambda image: tf.image.resize(image, (4, 4)))
    >>> images, ok = decode([tf.io.encode_png(np.zeros((8, 8, 3), "uint8")).numpy(), b"oops"])
    >>> images.shape, ok.tolist()
    ((2, 4, 4, 3), [True, False])
    """
    import tensorflow as tf

    # One trace for every batch size.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(encoded):
        def one(image):
            decoded, ok = decode_or_fallback(image)
            return convert(decoded), ok

        return tf.map_fn(one, encoded, fn_output_signature=(tf.float32, tf.bool))

    def run(images):
        converted, ok = decode(tf.constant(images, tf.string))
        return converted.numpy(), ok.numpy()

    return run


def undecodable_reason(encoded):
    """Why bytes that did not decode could not: empty, damaged, or not an image format."""
    if not encoded:
        return "no image data"
    if bytes(encoded).startswith(IMAGE_SIGNATURES):
        return "truncated or corrupt"
    return "not JPEG, PNG, GIF, BMP or WebP data"


def _decode_or_fail(encoded, image_id, source):
    """The decoded uint8 image, or an assertion error naming the example."""
    import tensorflow as tf

    image, ok = decode_or_fallback(encoded)

    def message():
        known_format = tf.reduce_any(
            [tf.strings.substr(encoded, 0, len(s)) == s for s in IMAGE_SIGNATURES]
        )
        reason = tf.where(
            tf.strings.length(encoded) == 0,
            "no image data",
            tf.where(known_format, "truncated or corrupt", "not JPEG, PNG, GIF, BMP or WebP data"),
        )
        what = tf.strings.join(["Undecodable image (", reason, ")"])
        return bad_example_message(what, image_id, source)

    with tf.control_dependencies([assert_with_lazy_message(ok, message)]):
        return tf.identity(image)
