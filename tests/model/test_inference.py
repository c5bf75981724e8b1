"""Inference like a library: raw images in, NumPy out, clear errors, on every backend."""

import re

import keras
import numpy as np
import pytest

from keras_3t import ThreeTowerPreprocessor
from keras_3t.demo.toy import toy_batch
from keras_3t.evaluation import zero_shot_accuracy
from keras_3t.evaluation import zero_shot_classifier
from keras_3t.preprocessing import caption_tokenizer
from tests.helpers import IMAGE_SIZE
from tests.helpers import SEQUENCE_LENGTH
from tests.helpers import text_of
from tests.helpers import tiny_model

VOCABULARY = ["[PAD]", "[UNK]", "a", "red", "blue", "square", "3", "7", "above"]


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    preprocessor = ThreeTowerPreprocessor(caption_tokenizer(VOCABULARY), SEQUENCE_LENGTH)
    return tiny_model(preprocessor=preprocessor)


@pytest.fixture(scope="module")
def photos():
    """uint8 images at the towers' size, and the same as floats in [0, 1]."""
    raw = np.random.default_rng(0).integers(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8")
    return raw, raw.astype("float32") / 255.0


def test_encoders_return_numpy_arrays(model, photos):
    _, images = photos
    for alpha in (1.0, 0.5):
        image_embeddings = model.encode_image(images, alpha=alpha)
        text_embeddings = model.encode_text(["a red square", "a 3 above a 7"], alpha=alpha)
        assert isinstance(image_embeddings, np.ndarray) and isinstance(text_embeddings, np.ndarray)
        assert np.asarray(image_embeddings).dtype == np.float32
        assert image_embeddings.shape[0] == 3 and text_embeddings.shape[0] == 2
        np.testing.assert_allclose(np.linalg.norm(image_embeddings, axis=1), 1.0, atol=1e-5)


def test_encoders_record_no_gradients(model, photos, monkeypatch):
    """On PyTorch the towers run under no_grad; elsewhere nothing is recorded anyway."""
    seen = []

    def spy(original):
        def wrapped(*args):
            if keras.backend.backend() == "torch":
                import torch

                seen.append(torch.is_grad_enabled())
            output = original(*args)
            seen.extend(getattr(path, "requires_grad", False) for path in output.values())
            return output

        return wrapped

    monkeypatch.setattr(model, "_image_paths", spy(model._image_paths))
    monkeypatch.setattr(model, "_text_paths", spy(model._text_paths))
    model.encode_image(photos[1], alpha=0.5)
    model.encode_text(["a red square"], alpha=0.5)
    assert seen and not any(seen)


def test_uint8_images_are_scaled_to_the_unit_range(model, photos):
    raw, images = photos
    np.testing.assert_allclose(model.encode_image(raw), model.encode_image(images), atol=1e-6)


def test_images_of_any_size_are_resized_and_centre_cropped(model):
    # A tall image whose middle square is one colour: the crop keeps only it.
    tall = np.zeros((3 * IMAGE_SIZE, IMAGE_SIZE, 3), "uint8")
    tall[IMAGE_SIZE : 2 * IMAGE_SIZE] = (200, 40, 90)
    plain = np.broadcast_to(np.array((200, 40, 90), "uint8"), (1, IMAGE_SIZE, IMAGE_SIZE, 3))
    np.testing.assert_allclose(model.encode_image(tall[None]), model.encode_image(plain), atol=1e-5)
    # A list of images of different sizes, gray or RGBA, is one batch.
    mixed = [np.full((40, 24), 128, "uint8"), np.full((9, 30, 4), 128, "uint8"), plain[0]]
    assert model.encode_image(mixed).shape[0] == 3


@pytest.mark.parametrize(
    "images, error, message",
    [
        ("photo.png", TypeError, "not an image: read it first"),
        (["a.png", "b.png"], TypeError, "not an image: read it first"),
        ({"images": np.zeros((1, 16, 16, 3))}, TypeError, "not a dict"),
        (np.zeros((16, 16, 3), "float32"), ValueError, r"For one image, pass images\[None\]"),
        (
            np.full((1, 16, 16, 3), 255.0, "float32"),
            ValueError,
            r"values in \[0, 1\]; these run from 255",
        ),
        (np.full((1, 16, 16, 3), 300, "int32"), ValueError, r"values in \[0, 255\]"),
        (np.zeros((1, 16, 16, 2), "uint8"), ValueError, "2 channels"),
        ([], ValueError, "empty list of images"),
        (np.zeros((0, 16, 16, 3), "float32"), ValueError, "empty batch of images"),
        (np.zeros((0, 40, 40, 3), "uint8"), ValueError, "empty batch of images"),
    ],
)
def test_encode_image_refuses_what_it_cannot_read(model, images, error, message):
    # The problem is named on the error's first line, on every backend.
    with pytest.raises(error) as raised:
        model.encode_image(images)
    assert re.search(message, str(raised.value).splitlines()[0])


def test_calling_the_model_on_an_empty_batch_names_it_first(model):
    with pytest.raises(ValueError) as raised:
        model({"images": np.zeros((0, 16, 16, 3), "float32")})
    assert str(raised.value).splitlines()[0].startswith("Got an empty batch of images")


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([], "got no captions"),
        ([1, 2], "got a list of int"),
        ({"token_ids": np.zeros((1, 4), "int32")}, "without a padding_mask"),
        (
            {"token_ids": np.zeros((0, 4), "int32"), "padding_mask": np.zeros((0, 4), bool)},
            "empty batch of token_ids",
        ),
        (["a red square", ""], "caption has no tokens.*index 1: ''"),
    ],
)
def test_encode_text_refuses_what_it_cannot_read(model, inputs, message):
    with pytest.raises(ValueError) as raised:
        model.encode_text(inputs)
    assert re.search(message, str(raised.value).splitlines()[0])


def test_alpha_takes_numpy_scalars_and_refuses_the_rest(model, photos):
    images = photos[1]
    expected = model.encode_image(images, alpha=0.5)
    for alpha in (np.float32(0.5), np.float64(0.5), np.array(0.5)):
        np.testing.assert_allclose(model.encode_image(images, alpha=alpha), expected, atol=1e-6)
    assert model.encode_text(["a red square"], alpha=np.int64(1)).shape[1] == expected.shape[1] // 2
    for alpha in (True, "0.5", None, 1.5, np.array([0.5])):
        with pytest.raises(ValueError, match="alpha must be a number"):
            model.encode_image(images, alpha=alpha)


def test_batches_of_uint8_images_are_refused_and_the_model_kept(model, photos):
    before = model.encode_image(photos[1])
    batch = toy_batch(4, image_size=IMAGE_SIZE, seed=0)
    batch["images"] = (batch["images"] * 255).astype("uint8")
    model.compile()
    with pytest.raises(ValueError, match="image_converter"):
        model.fit(batch, batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="image_converter"):
        model.evaluate(batch, batch_size=4, verbose=0)
    # The refused steps left every weight in place (Keras's JAX loops take
    # them out of the model while they run).
    np.testing.assert_array_equal(model.encode_image(photos[1]), before)


def test_zero_shot_uses_the_models_preprocessor(model, photos):
    names = ["red", "blue"]
    own = zero_shot_classifier(model, names, ["a {} square"])
    explicit = zero_shot_classifier(model, names, ["a {} square"], tokenizer=model.preprocessor)
    np.testing.assert_allclose(own, explicit, atol=1e-6)
    labels = np.array([0, 1, 0])
    from_names = zero_shot_accuracy(model, photos[0], labels, names)
    from_classifier = zero_shot_accuracy(
        model, photos[1], labels, zero_shot_classifier(model, names)
    )
    assert from_names == from_classifier


def test_call_returns_backend_tensors(model):
    batch = toy_batch(2, image_size=IMAGE_SIZE, seed=0)
    outputs = model({"images": batch["images"], **text_of(batch)})
    assert keras.ops.is_tensor(outputs["image_embeddings"])
    assert tuple(outputs["text_embeddings"].shape) == (2, 16)


def test_a_new_model_has_every_layer_built(model):
    """An unbuilt sublayer (the converter has no weights) would make `fit`
    rebuild the model on its first batch, and change what training draws."""
    assert [layer.name for layer in model._flatten_layers() if not layer.built] == []
