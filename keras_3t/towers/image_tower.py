"""The image tower f: backbone → pooled features u_f → linear projection."""

import keras

from keras_3t.towers.backbone_tower import BackboneTower


@keras.saving.register_keras_serializable(package="keras_3t")
class ImageTower(BackboneTower):
    """Image tower: a backbone, pooled, then a linear projection.

    For 3T and CLIP the backbone is trained from scratch (typically a
    keras-hub `ViTBackbone` built from a config); for LiT it is a pretrained
    backbone with `frozen=True`, and only the projection (if any) trains.

    Calling the tower returns a dict: `"pooled"` (u_f, the pooled backbone
    features) and `"embedding"` (the projection of u_f, not normalised).

    Args:
        backbone: a keras-hub image `Backbone` or any Keras image model.
        embedding_dim: int, the size of the projected embedding, or None for
            no projection (the embedding is then the pooled features).
        pooling: `"auto"`, `"token"`, `"mean"` or `"none"`; see
            `keras_3t.towers.pooling.pool_image_features`.
        frozen: bool. Freeze the backbone (LiT).
        image_converter: optional Keras layer applied to the images first.

    Example:
    >>> import numpy as np, keras_hub
    >>> from keras_3t.towers import ImageTower
    >>> vit = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3),
    ...     patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    >>> tower = ImageTower(vit, embedding_dim=8)
    >>> tuple(tower(np.zeros((2, 16, 16, 3), "float32"))["embedding"].shape)
    (2, 8)
    """

    def __init__(
        self,
        backbone,
        embedding_dim,
        pooling="auto",
        frozen=False,
        image_converter=None,
        **kwargs,
    ):
        super().__init__(
            backbone,
            pooling=pooling,
            frozen=frozen,
            image_converter=image_converter,
            **kwargs,
        )
        self.embedding_dim = embedding_dim
        self.projection = (
            None
            if embedding_dim is None
            else keras.layers.Dense(embedding_dim, use_bias=False, name="projection")
        )

    @property
    def output_dim(self):
        """The size of the tower's embedding."""
        return self.feature_dim if self.embedding_dim is None else self.embedding_dim

    def build(self, input_shape=None):
        if self.projection is not None:
            self.projection.build((None, self.feature_dim))
        self.built = True

    def call(self, images, training=None):
        pooled = self.features(images, training=training)
        embedding = pooled if self.projection is None else self.projection(pooled)
        return {"pooled": pooled, "embedding": embedding}

    def get_config(self):
        config = super().get_config()
        config["embedding_dim"] = self.embedding_dim
        return config
