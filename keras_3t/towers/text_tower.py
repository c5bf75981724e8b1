"""The text tower g: token + position embedding → transformer → pool → project."""

import keras
import keras_hub
from keras import ops

from keras_3t.towers.pooling import TEXT_POOLINGS
from keras_3t.towers.pooling import pool_text_features


@keras.saving.register_keras_serializable(package="keras_3t")
class TextTower(keras.layers.Layer):
    """Text tower: a pre-norm transformer encoder trained from scratch.

    Token and learned position embeddings (keras-hub
    `TokenAndPositionEmbedding`), `num_layers` keras-hub `TransformerEncoder`
    blocks (bidirectional, or causal as CLIP's, padding masked), a final
    layer norm, pooling over the padding mask, and a linear projection.

    Called on `{"token_ids": int (batch, length), "padding_mask": bool
    (batch, length)}` (right-padded, as keras-hub preprocessors produce), it
    returns a dict: `"pooled"` (u_g) and `"embedding"` (not normalised).

    Args:
        vocabulary_size: int, number of token ids.
        sequence_length: int, the longest sequence the tower accepts.
        embedding_dim: int, size of the projected embedding.
        hidden_dim: int, width of the transformer.
        num_layers: int, number of transformer blocks.
        num_heads: int, attention heads per block.
        intermediate_dim: int, width of each block's MLP.
        dropout: float, dropout rate inside the blocks.
        pooling: `"mean"` (over real tokens), `"first"` or `"last"` (the last
            real token).
        layer_norm_epsilon: float.
        causal: bool. Each token attends only to itself and earlier tokens
            (CLIP's and open_clip's text transformer; pair with
            `pooling="last"`, CLIP's end-of-text token).

    Example:
    >>> import numpy as np
    >>> from keras_3t.towers import TextTower
    >>> tower = TextTower(vocabulary_size=50, sequence_length=8,
    ...     embedding_dim=4, hidden_dim=16, num_layers=1, num_heads=2,
    ...     intermediate_dim=32)
    >>> out = tower({"token_ids": np.ones((2, 8), "int32"),
    ...              "padding_mask": np.ones((2, 8), bool)})
    >>> tuple(out["embedding"].shape)
    (2, 4)
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        hidden_dim,
        num_layers,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        pooling="mean",
        layer_norm_epsilon=1e-5,
        causal=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pooling not in TEXT_POOLINGS:
            raise ValueError(f"Unknown text pooling {pooling!r}; expected one of {TEXT_POOLINGS}.")
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.pooling = pooling
        self.layer_norm_epsilon = layer_norm_epsilon
        self.causal = causal

        # === Layers ===
        self.token_embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=vocabulary_size,
            sequence_length=sequence_length,
            embedding_dim=hidden_dim,
            name="token_embedding",
        )
        self.encoder_blocks = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=intermediate_dim,
                num_heads=num_heads,
                dropout=dropout,
                activation="gelu",
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=True,
                name=f"encoder_block_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="final_norm"
        )
        self.projection = keras.layers.Dense(embedding_dim, use_bias=False, name="projection")

    @property
    def output_dim(self):
        """The size of the tower's embedding."""
        return self.embedding_dim

    def build(self, input_shape=None):
        sequence_shape = (None, self.sequence_length)
        self.token_embedding.build(sequence_shape)
        hidden_shape = (None, self.sequence_length, self.hidden_dim)
        for block in self.encoder_blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self.projection.build((None, self.hidden_dim))
        self.built = True

    def call(self, inputs, training=None):
        token_ids = inputs["token_ids"]
        padding_mask = inputs["padding_mask"]
        x = self.token_embedding(token_ids)
        attention_mask = None
        if self.causal:
            length = ops.shape(token_ids)[1]
            attention_mask = ops.tril(ops.ones((length, length), "bool"))[None]
        for block in self.encoder_blocks:
            x = block(
                x,
                padding_mask=padding_mask,
                attention_mask=attention_mask,
                training=training,
            )
        x = self.final_norm(x)
        pooled = pool_text_features(x, padding_mask, self.pooling)
        return {"pooled": pooled, "embedding": self.projection(pooled)}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "pooling": self.pooling,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "causal": self.causal,
            }
        )
        return config
