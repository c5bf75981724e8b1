"""The part every image tower shares: a backbone, optionally frozen, pooled."""

import keras

from keras_3t.towers.pooling import pool_image_features


class BackboneTower(keras.layers.Layer):
    """Runs an image backbone and pools its output to `(batch, dim)` features.

    A frozen backbone is never trained and always runs in inference mode
    (batch norm statistics and dropout frozen), and no gradient flows into it.

    Args:
        backbone: a keras-hub image `Backbone` or any Keras image model taking
            `(batch, height, width, channels)` images.
        pooling: see `keras_3t.towers.pooling.pool_image_features`.
        frozen: bool. Freeze the backbone.
        image_converter: optional Keras layer applied to the images before
            the backbone (e.g. a keras-hub `ImageConverter` or
            `keras.layers.Resizing`), for a pretrained backbone that expects
            another size or value range than the batch carries.
    """

    def __init__(
        self,
        backbone,
        pooling="auto",
        frozen=False,
        image_converter=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.pooling = pooling
        self.frozen = frozen
        self.image_converter = image_converter
        if frozen:
            # Not `backbone.trainable = False`: TensorFlow's AutoTrackable skips
            # that assignment when the flag already reads False (a frozen
            # backbone restored from a config), leaving its sublayers trainable.
            keras.layers.Layer.trainable.fset(self.backbone, False)

    @property
    def feature_dim(self):
        """The size of the pooled features."""
        return self.backbone.output_shape[-1]

    @property
    def image_shape(self):
        """`(height, width, channels)` expected of the images (None: any)."""
        if self.image_converter is not None:
            return (None, None, None)
        return tuple(self.backbone.input_shape[1:])

    def features(self, images, training=None):
        """Pooled backbone features of a batch of images."""
        if self.image_converter is not None:
            images = self.image_converter(images)
        if self.frozen:
            features = self.backbone(images, training=False)
        else:
            features = self.backbone(images, training=training)
        features = pool_image_features(features, self.pooling)
        if self.frozen:
            features = keras.ops.stop_gradient(features)
        return features

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "pooling": self.pooling,
                "frozen": self.frozen,
                "image_converter": (
                    None
                    if self.image_converter is None
                    else keras.layers.serialize(self.image_converter)
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        if config.get("image_converter") is not None:
            config["image_converter"] = keras.layers.deserialize(config["image_converter"])
        return cls(**config)
