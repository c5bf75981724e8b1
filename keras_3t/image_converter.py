"""ImageConverter: a user's images, of any size and dtype, as a model's input."""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="keras_3t")
class ImageConverter(keras.layers.Layer):
    """Raw images → float images in [0, 1] at the towers' size.

    Every `ThreeTowerModel` carries one (`model.image_converter`, saved with
    the model and its presets), so `model.encode_image` takes photos as they
    come; it also maps over a `tf.data` pipeline, like open_clip's
    `preprocess` or keras-hub's `ImageConverter`.

    - Values: integer images hold 0-255 (uint16: 0-65535) and are scaled to
      [0, 1]; float images must already be in [0, 1]. Checked on eager
      input: values out of range are an error, never silently clipped or
      taken as bright pixels.
    - Size: each image is resized, keeping its aspect ratio, until it covers
      `image_size`, then centre-cropped to it: the crop `make_dataset` uses
      for evaluation. Images already at `image_size` are left untouched.
    - Channels: gray images are repeated to RGB (or RGB averaged to gray for
      a one-channel tower); an alpha channel is dropped.

    Input: a batch `(N, H, W, C)`, one image `(H, W, C)` (inside
    `tf.data.Dataset.map`, say), or a list of images `(H, W[, C])` whose
    sizes differ. Output: a float32 TensorFlow tensor, whatever the Keras
    backend (it runs in `tf.data`).

    Args:
        image_size: `(height, width)` of the model's images, or None to keep
            each image's size.
        channels: 1 or 3, the towers' channel count.

    Example:
    >>> import numpy as np
    >>> from keras_3t import ImageConverter
    >>> converter = ImageConverter(image_size=(56, 56))
    >>> photo = np.full((120, 80, 3), 255, dtype="uint8")  # any size, 0-255
    >>> images = converter(photo[None])
    >>> tuple(images.shape), round(float(images.numpy().max()), 4)
    ((1, 56, 56, 3), 1.0)
    """

    def __init__(self, image_size=None, channels=3, **kwargs):
        super().__init__(**kwargs)
        if image_size is not None:
            image_size = tuple(image_size)
            if len(image_size) != 2 or not all(
                isinstance(side, int) and side > 0 for side in image_size
            ):
                raise ValueError(
                    f"image_size must be (height, width) in pixels; got {image_size!r}."
                )
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {channels!r}.")
        self.image_size = image_size
        self.channels = channels
        # No weights: built from the start. An unbuilt sublayer would make
        # Keras build the model again on the first batch of `fit`.
        self.built = True

    def __call__(self, images):
        # Plain TensorFlow on every backend (it must run inside tf.data), so
        # Keras's conversion of inputs to the backend's tensors is skipped; the
        # layer has no weights to build.
        return self.call(images)

    def call(self, images):
        import tensorflow as tf

        if isinstance(images, (str, bytes)):
            _as_image(images)
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("Got an empty list of images.")
            return tf.stack([self._convert_one(_as_image(image)) for image in images])
        images = _as_tensor(images)
        if images.shape.rank == 3:
            return self._convert_one(images)
        if images.shape.rank != 4:
            raise ValueError(
                "Images must be a batch (N, height, width, channels), one image "
                "(height, width, channels) or a list of images; got shape "
                f"{tuple(images.shape)}."
            )
        return self._convert(images)

    def _convert_one(self, image):
        if image.shape.rank == 2:
            image = image[..., None]
        if image.shape.rank != 3:
            raise ValueError(
                "Each image must be (height, width) or (height, width, "
                f"channels); got shape {tuple(image.shape)}."
            )
        return self._convert(image)

    def _convert(self, images):
        """One image or a batch: values, then channels, then size."""
        return self._resize(self._channels(to_unit_range(images)))

    def _channels(self, images):
        import tensorflow as tf

        channels = images.shape[-1]
        if channels == 4:  # RGBA: the alpha channel is not a colour
            images, channels = images[..., :3], 3
        if channels == self.channels:
            return images
        if channels == 1 and self.channels == 3:
            return tf.image.grayscale_to_rgb(images)
        if channels == 3 and self.channels == 1:
            return tf.image.rgb_to_grayscale(images)
        raise ValueError(
            f"Images have {channels} channels; this model takes {self.channels} "
            "(1 gray, 3 RGB or 4 RGBA can be converted)."
        )

    def _resize(self, images):
        if self.image_size is None:
            return images
        if tuple(images.shape[-3:-1]) == self.image_size:
            return images
        return resize_and_center_crop(images, self.image_size)

    def get_config(self):
        config = super().get_config()
        config.update({"image_size": self.image_size, "channels": self.channels})
        return config


def resize_and_center_crop(images, size):
    """Resizes (antialiased) to cover `size` = (height, width), then centre-crops.

    Works on one image `(H, W, C)` or a batch; in `tf.data` or eagerly.
    """
    import tensorflow as tf

    target = tf.constant(size, tf.float32)
    shape = tf.cast(tf.shape(images)[-3:-1], tf.float32)
    # Scaled so the side that needs the larger factor fits exactly.
    side = tf.argmax(target / shape)
    scaled = tf.math.ceil(shape * tf.gather(target, side) / tf.gather(shape, side))
    images = tf.image.resize(images, tf.cast(scaled, tf.int32), antialias=True)
    return tf.image.resize_with_crop_or_pad(images, size[0], size[1])


def _as_image(image):
    if isinstance(image, (str, bytes)):
        raise TypeError(
            f"Got a file name or bytes ({str(image)[:60]!r}), not an image: read "
            "it first, e.g. np.asarray(keras.utils.load_img(path))."
        )
    return _as_tensor(image)


def _as_tensor(images):
    import tensorflow as tf

    if isinstance(images, tf.Tensor):
        return images
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    array = keras.ops.convert_to_numpy(images) if not isinstance(images, np.ndarray) else images
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise TypeError(f"Images must be numeric arrays; got dtype {array.dtype}.")
    return tf.convert_to_tensor(array)


def to_unit_range(images):
    """A TensorFlow image tensor as float32 in [0, 1]: integers scaled (uint8 / 255)."""
    import tensorflow as tf

    if images.dtype == tf.bool:
        raise TypeError("Images must be numeric arrays; got bool.")
    integer = images.dtype.is_integer
    top_value = 65535.0 if images.dtype == tf.uint16 else 255.0 if integer else 1.0
    images = tf.cast(images, tf.float32)
    if tf.executing_eagerly() and tf.size(images) > 0:
        check_value_range(
            float(tf.reduce_min(images)), float(tf.reduce_max(images)), top_value, integer
        )
    return images / top_value if integer else images


def check_value_range(low, high, top_value=1.0, integer=False):
    """Raises a ValueError unless [low, high] lies in [0, top_value]."""
    if low < 0.0 or high > top_value * (1 + 1e-3):
        raise ValueError(
            f"{'Integer' if integer else 'Float'} images must hold values in "
            f"[0, {top_value:g}]; these run from {low:g} to {high:g}. Pass uint8 "
            "images (0-255, scaled to [0, 1]) or floats in [0, 1]."
        )
