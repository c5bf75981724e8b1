"""The third tower h: a frozen pretrained image model with learnable heads."""

import keras

from keras_3t.towers import keras_hub_presets
from keras_3t.towers.backbone_tower import BackboneTower


@keras.saving.register_keras_serializable(package="keras_3t")
class ThirdTower(BackboneTower):
    """Third tower: frozen pretrained features e(x) and linear heads B_f, B_g.

    The backbone is always frozen: never trained, always run in inference
    mode, no gradient into it. Its pooled pre-logit features `e(x)` go
    through two learnable linear heads: `h_f = B_f e`, aligned with the image
    tower, and `h_g = B_g e`, aligned with the text tower (docs/method.md). With
    `shared_head=True` one head serves both.

    Calling the tower returns a dict with `"features"` (e),
    `"image_head"` (h_f) and `"text_head"` (h_g), none normalised.

    Args:
        backbone: a pretrained keras-hub image `Backbone` (e.g. loaded with
            `keras_hub.models.Backbone.from_preset`) or any Keras image model.
        embedding_dim: int, the size of the heads' outputs.
        pooling: how to pool the backbone output to pre-logit features; see
            `keras_3t.towers.pooling.pool_image_features`.
        shared_head: bool. One head for both pairs instead of two.
        image_converter: optional Keras layer applied to the images first
            (resize / rescale to what the pretrained model expects).

    Example:
    >>> import numpy as np, keras
    >>> from keras_3t.towers import ThirdTower
    >>> cnn = keras.Sequential([keras.Input((16, 16, 3)),
    ...     keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization()])
    >>> tower = ThirdTower(cnn, embedding_dim=4)
    >>> tuple(tower(np.zeros((2, 16, 16, 3), "float32"))["text_head"].shape)
    (2, 4)
    """

    def __init__(
        self,
        backbone,
        embedding_dim,
        pooling="auto",
        shared_head=False,
        image_converter=None,
        **kwargs,
    ):
        kwargs.pop("frozen", None)  # always frozen; present in saved configs
        super().__init__(
            backbone,
            pooling=pooling,
            frozen=True,
            image_converter=image_converter,
            **kwargs,
        )
        self.embedding_dim = embedding_dim
        self.shared_head = shared_head
        if shared_head:
            self.image_head = keras.layers.Dense(embedding_dim, use_bias=False, name="head")
            self.text_head = self.image_head
        else:
            self.image_head = keras.layers.Dense(embedding_dim, use_bias=False, name="image_head")
            self.text_head = keras.layers.Dense(embedding_dim, use_bias=False, name="text_head")

    @classmethod
    def from_preset(
        cls,
        preset,
        embedding_dim,
        pooling="auto",
        shared_head=False,
        image_converter="preset",
        load_weights=True,
        **kwargs,
    ):
        """A third tower around a pretrained keras-hub backbone.

        Args:
            preset: a keras-hub preset name (`"vit_base_patch16_224_imagenet"`),
                a `kaggle://` or `hf://` handle, a local folder written by
                keras-hub's `save_to_preset`, or a keras-hub `Backbone`. A CLIP
                or SigLIP preset gives its vision encoder.
            embedding_dim: int, the size of the heads' outputs.
            pooling: see `ThirdTower`; `"auto"` pools as keras-hub's own
                classifier for the family does.
            shared_head: bool. One head for both pairs.
            image_converter: `"preset"` (the default): the preset's own image
                converter (resize and normalisation), taking images in
                [0, 1], if it has one; or a Keras layer; or None.
            load_weights: bool. False builds the architecture with fresh
                weights.

        Raises:
            keras_3t.presets.WeightsUnavailableError: the preset could not be
                fetched (offline, say); the message says how to pass a local
                copy instead.

        Example:
        >>> import os, tempfile, keras_hub
        >>> from keras_3t import ThirdTower
        >>> folder = os.path.join(tempfile.mkdtemp(), "vit")
        >>> keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=8,
        ...     num_layers=1, num_heads=2, hidden_dim=16,
        ...     mlp_dim=32).save_to_preset(folder)
        >>> tower = ThirdTower.from_preset(folder, embedding_dim=4)
        >>> tower.resolved_pooling, tower.feature_dim
        ('token', 16)
        """
        if isinstance(preset, keras.Model):
            backbone = getattr(preset, "vision_encoder", preset)
            converter = None
        else:
            backbone = keras_hub_presets.load_backbone(preset, load_weights)
            converter = keras_hub_presets.load_image_converter(preset)
        if not isinstance(image_converter, str):
            converter = image_converter
        elif image_converter != "preset":
            raise ValueError(
                f"image_converter must be 'preset', a Keras layer or None; got {image_converter!r}."
            )
        return cls(
            backbone,
            embedding_dim,
            pooling=pooling,
            shared_head=shared_head,
            image_converter=converter,
            **kwargs,
        )

    def build(self, input_shape=None):
        self.image_head.build((None, self.feature_dim))
        if not self.shared_head:
            self.text_head.build((None, self.feature_dim))
        self.built = True

    def call(self, images, training=None):
        return self.heads(self.features(images))

    def heads(self, features):
        """The heads applied to pre-logit features `e(x)` (live or cached).

        Args:
            features: float `(batch, feature_dim)`, the frozen backbone's
                pooled features (e.g. read back from a
                `keras_3t.data.write_third_tower_cache` cache).

        Returns:
            The same dict as calling the tower.
        """
        return {
            "features": features,
            "image_head": self.image_head(features),
            "text_head": self.text_head(features),
        }

    def get_config(self):
        config = super().get_config()
        config.update({"embedding_dim": self.embedding_dim, "shared_head": self.shared_head})
        return config
