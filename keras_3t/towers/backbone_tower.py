"""The part every image tower shares: a backbone, optionally frozen, pooled."""

import keras

from keras_3t.towers.pooling import backbone_input_key
from keras_3t.towers.pooling import backbone_output_shape
from keras_3t.towers.pooling import backbone_stage
from keras_3t.towers.pooling import pool_image_features
from keras_3t.towers.pooling import resolve_image_pooling


class BackboneTower(keras.layers.Layer):
    """Runs an image backbone and pools its output to `(batch, dim)` features.

    A frozen backbone is never trained and always runs in inference mode
    (batch norm statistics and dropout frozen), and no gradient flows into it.

    Args:
        backbone: a keras-hub image `Backbone` or any Keras image model taking
            `(batch, height, width, channels)` images.
        pooling: `"auto"` (keras-hub's own classifier's pooling for the
            family), `"token"`, `"mean"` or `"none"`; see
            `keras_3t.towers.pooling.resolve_image_pooling`. A backbone that
            returns a dict of stages is pooled from its last stage.
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
        # What the backbone is called on and what is pooled, and how:
        # resolved once, from the backbone. (keras-hub's CLIP and SigLIP
        # vision encoders take `{"images": ...}`.)
        self.input_key = backbone_input_key(backbone)
        self.stage = backbone_stage(backbone)
        self.resolved_pooling = resolve_image_pooling(backbone, pooling)
        if frozen:
            # Not `backbone.trainable = False`: TensorFlow's AutoTrackable skips
            # that assignment when the flag already reads False (a frozen
            # backbone restored from a config), leaving its sublayers trainable.
            keras.layers.Layer.trainable.fset(self.backbone, False)

    @property
    def feature_dim(self):
        """The size of the pooled features."""
        return backbone_output_shape(self.backbone)[-1]

    @property
    def image_shape(self):
        """`(height, width, channels)` expected of the images (None: any)."""
        if self.image_converter is not None:
            return (None, None, None)
        shape = self.backbone.input_shape
        if isinstance(shape, dict):
            shape = shape[self.input_key]
        return tuple(shape[1:])

    def features(self, images, training=None):
        """Pooled backbone features of a batch of images."""
        if self.image_converter is not None:
            images = self.image_converter(images)
        inputs = images if self.input_key is None else {self.input_key: images}
        if self.frozen:
            features = self.backbone(inputs, training=False)
        else:
            features = self.backbone(inputs, training=training)
        if self.stage is not None:
            features = features[self.stage]
        features = pool_image_features(features, self.resolved_pooling)
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
