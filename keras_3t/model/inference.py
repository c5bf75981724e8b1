"""What a trained model is used for: embedding images and captions."""

import math

import numpy as np
from keras import ops

from keras_3t.losses import normalized_embedding
from keras_3t.model.input_checks import are_strings
from keras_3t.model.input_checks import check_alpha
from keras_3t.model.input_checks import check_images
from keras_3t.model.input_checks import check_text
from keras_3t.model.input_checks import image_batch
from keras_3t.training import no_gradients


class ThreeTowerInference:
    """`ThreeTowerModel`'s inference methods: `call`, `encode_image`, `encode_text`.

    A mixin: it reads the model's towers, `text_adaptor`, `adaptor_input`,
    `image_converter` and `preprocessor`.
    """

    def call(self, inputs, training=False):
        """Embeds whatever the batch holds: images, captions or both.

        Returns a dict with `"image_embeddings"` (if `inputs` has
        `"images"`) and `"text_embeddings"` (if it has `"token_ids"`),
        L2-normalised, at alpha = 1, as backend tensors.
        """
        outputs = {}
        if "images" in inputs:
            check_images(self, inputs["images"])
            outputs["image_embeddings"] = self._image_embeddings(inputs["images"], 1.0)
        if "token_ids" in inputs:
            check_text(self, inputs)
            outputs["text_embeddings"] = self._text_embeddings(inputs, 1.0)
        return outputs

    def encode_image(self, images, alpha=1.0):
        """L2-normalised image embeddings, optionally the α-combination.

        Runs without recording gradients and returns a NumPy array on every
        backend.

        Args:
            images: a batch `(batch, height, width, channels)`: floats in
                [0, 1] at the towers' size, or anything `image_converter`
                takes (uint8 0-255, any size, gray or RGB; or a list of
                images of different sizes), which it converts.
            alpha: float in [0, 1]. At 1, f(x). Below 1 (3T models only),
                `[√α f(x), √(1−α) h_g(x)]`, whose dot product with
                `encode_text(..., alpha)` is s_α = α⟨f, g⟩ + (1−α)⟨h_g, g_h⟩.

        Returns:
            float32 NumPy array `(batch, dim)`.
        """
        alpha = check_alpha(self, alpha)
        images = image_batch(self, images)
        with no_gradients():
            return ops.convert_to_numpy(self._image_embeddings(images, alpha))

    def encode_text(self, inputs, alpha=1.0):
        """L2-normalised text embeddings, optionally the α-combination.

        Runs without recording gradients and returns a NumPy array on every
        backend.

        Args:
            inputs: a list of caption strings (for a model with a
                `preprocessor`), or a dict with `"token_ids"` int
                `(batch, length)` and `"padding_mask"` bool `(batch, length)`.
            alpha: float in [0, 1]. At 1, g(t). Below 1 (3T models only),
                `[√α g(t), √(1−α) g_h(t)]`.

        Returns:
            float32 NumPy array `(batch, dim)`.
        """
        alpha = check_alpha(self, alpha)
        if isinstance(inputs, (list, tuple, np.ndarray)) and len(inputs) == 0:
            raise ValueError("encode_text got no captions: pass a list of strings.")
        if are_strings(inputs):
            if self.preprocessor is None:
                raise ValueError(
                    "encode_text got caption strings, but this model has no "
                    "preprocessor to tokenize them: build it with "
                    "preprocessor=ThreeTowerPreprocessor(...) or pass "
                    "{'token_ids': ..., 'padding_mask': ...}."
                )
            inputs = self.preprocessor(list(np.asarray(inputs).reshape(-1)))
        check_text(self, inputs)
        with no_gradients():
            return ops.convert_to_numpy(self._text_embeddings(inputs, alpha))

    def _image_embeddings(self, images, alpha):
        f = normalized_embedding(self.image_tower(images, training=False)["embedding"])
        if alpha == 1.0:
            return f
        h_g = normalized_embedding(self.third_tower(images)["text_head"])
        return ops.concatenate([math.sqrt(alpha) * f, math.sqrt(1.0 - alpha) * h_g], axis=-1)

    def _text_embeddings(self, inputs, alpha):
        text = self.text_tower(inputs, training=False)
        g = normalized_embedding(text["embedding"])
        if alpha == 1.0:
            return g
        g_h = normalized_embedding(self.text_adaptor(text[self.adaptor_input]))
        return ops.concatenate([math.sqrt(alpha) * g, math.sqrt(1.0 - alpha) * g_h], axis=-1)
