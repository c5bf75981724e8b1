"""What a trained model is used for: embedding images and captions."""

import numpy as np
from keras import ops

from keras_3t.combination import MAIN_PATH
from keras_3t.combination import combine_paths
from keras_3t.combination import path_weights
from keras_3t.combination import paths_needed
from keras_3t.losses import normalized_embedding
from keras_3t.model.input_checks import are_strings
from keras_3t.model.input_checks import check_images
from keras_3t.model.input_checks import check_text
from keras_3t.model.input_checks import image_batch
from keras_3t.training import no_gradients


class ThreeTowerInference:
    """`ThreeTowerModel`'s inference methods: `call`, `encode_image`, `encode_text`.

    A mixin: it reads the model's towers, `third_towers`, `text_adaptors`,
    `adaptor_input`, `image_converter` and `preprocessor`.
    """

    @property
    def path_names(self):
        """The scoring paths: `"main"`, then each frozen tower's name."""
        return (MAIN_PATH, *self.third_towers)

    def call(self, inputs, training=False):
        """Embeds whatever the batch holds: images, captions or both.

        Returns a dict with `"image_embeddings"` (if `inputs` has
        `"images"`) and `"text_embeddings"` (if it has `"token_ids"`),
        L2-normalised, at alpha = 1, as backend tensors.
        """
        outputs = {}
        if "images" in inputs:
            check_images(self, inputs["images"])
            outputs["image_embeddings"] = self._image_paths(inputs["images"], (MAIN_PATH,))[
                MAIN_PATH
            ]
        if "token_ids" in inputs:
            check_text(self, inputs)
            outputs["text_embeddings"] = self._text_paths(inputs, (MAIN_PATH,))[MAIN_PATH]
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
                With several frozen towers, 1 − α is shared equally among
                them; or pass a dict of weights by path (`"main"` and the
                towers' names) that sum to 1 (`keras_3t.combination`).

        Returns:
            float32 NumPy array `(batch, dim)`.
        """
        weights = path_weights(self.path_names, alpha)
        return combine_paths(self.encode_image_paths(images, paths_needed(weights)), weights)

    def encode_image_paths(self, images, paths=None):
        """Each path's L2-normalised image embedding, unweighted.

        Args:
            images: as `encode_image` takes them.
            paths: the path names to embed (default `path_names`): `"main"`
                gives f(x), a frozen tower's name its h_g(x).

        Returns:
            A dict path name → float32 NumPy array `(batch, dim)`.
        """
        paths = self._check_paths(paths)
        images = image_batch(self, images)
        with no_gradients():
            return _to_numpy(self._image_paths(images, paths))

    def encode_text(self, inputs, alpha=1.0):
        """L2-normalised text embeddings, optionally the α-combination.

        Runs without recording gradients and returns a NumPy array on every
        backend.

        Args:
            inputs: a list of caption strings (for a model with a
                `preprocessor`), or a dict with `"token_ids"` int
                `(batch, length)` and `"padding_mask"` bool `(batch, length)`.
            alpha: float in [0, 1], or a dict of weights by path, as
                `encode_image` takes it. At 1, g(t). Below 1 (3T models
                only), `[√α g(t), √(1−α) g_h(t)]`.

        Returns:
            float32 NumPy array `(batch, dim)`.
        """
        weights = path_weights(self.path_names, alpha)
        return combine_paths(self.encode_text_paths(inputs, paths_needed(weights)), weights)

    def encode_text_paths(self, inputs, paths=None):
        """Each path's L2-normalised text embedding, unweighted.

        Args:
            inputs: as `encode_text` takes them.
            paths: the path names to embed (default `path_names`): `"main"`
                gives g(t), a frozen tower's name its g_h(t).

        Returns:
            A dict path name → float32 NumPy array `(batch, dim)`.
        """
        paths = self._check_paths(paths)
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
            return _to_numpy(self._text_paths(inputs, paths))

    def _check_paths(self, paths):
        paths = self.path_names if paths is None else tuple(paths)
        unknown = sorted(set(paths) - set(self.path_names))
        if unknown or not paths:
            raise ValueError(
                f"paths must name some of this model's paths {list(self.path_names)}; "
                f"got {list(paths)}."
            )
        return paths

    def _image_paths(self, images, paths):
        embeddings = {}
        for name in paths:
            if name == MAIN_PATH:
                embedding = self.image_tower(images, training=False)["embedding"]
            else:
                embedding = self.third_towers[name](images)["text_head"]
            embeddings[name] = normalized_embedding(embedding)
        return embeddings

    def _text_paths(self, inputs, paths):
        text = self.text_tower(inputs, training=False)
        embeddings = {}
        for name in paths:
            if name == MAIN_PATH:
                embedding = text["embedding"]
            else:
                embedding = self.text_adaptors[name](text[self.adaptor_input])
            embeddings[name] = normalized_embedding(embedding)
        return embeddings


def _to_numpy(embeddings):
    return {name: ops.convert_to_numpy(value) for name, value in embeddings.items()}
