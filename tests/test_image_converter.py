"""keras_3t.image_converter: any image size in, the towers' size out."""

import numpy as np

from keras_3t import ImageConverter
from keras_3t import ThreeTowerPreprocessor
from keras_3t.preprocessing import caption_tokenizer
from tests.helpers import IMAGE_SIZE
from tests.helpers import SEQUENCE_LENGTH
from tests.helpers import tiny_model

VOCABULARY = ["[PAD]", "[UNK]", "a", "red", "blue", "square", "3", "7", "above"]


def test_image_converter_output():
    converter = ImageConverter(image_size=(8, 12), channels=3)
    wide = np.zeros((2, 20, 60, 3), "uint8")
    wide[:, :, 25:35] = 255  # a bright band in the middle
    images = converter(wide).numpy()
    assert images.shape == (2, 8, 12, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 + 1e-6
    assert images[:, :, 6].min() > 0.9 and images[:, :, 0].max() < 0.01
    # Already at the size and in range: passed through unchanged.
    ready = np.random.default_rng(1).random((2, 8, 12, 3)).astype("float32")
    np.testing.assert_array_equal(converter(ready).numpy(), ready)
    # Gray to RGB and RGB to gray.
    assert converter(np.zeros((1, 8, 12, 1), "uint8")).shape == (1, 8, 12, 3)
    assert ImageConverter((8, 12), channels=1)(wide).shape == (2, 8, 12, 1)


def test_image_converter_maps_over_tf_data():
    import tensorflow as tf

    converter = ImageConverter(image_size=(16, 16))
    photos = tf.data.Dataset.from_tensor_slices(np.zeros((4, 30, 20, 3), "uint8"))
    batches = list(photos.map(converter).batch(2))
    assert [tuple(batch.shape) for batch in batches] == [(2, 16, 16, 3)] * 2


def test_image_converter_is_saved_with_the_model(tmp_path):
    converter = ImageConverter(image_size=(IMAGE_SIZE, IMAGE_SIZE), channels=3, name="photos")
    preprocessor = ThreeTowerPreprocessor(caption_tokenizer(VOCABULARY), SEQUENCE_LENGTH)
    model = tiny_model(preprocessor=preprocessor, image_converter=converter)
    path = str(tmp_path / "model.keras")
    model.save(path)
    from keras_3t.saving import load_model

    restored = load_model(path)
    assert restored.image_converter.name == "photos"
    assert restored.image_converter.get_config() == converter.get_config()
    model.save_to_preset(str(tmp_path / "preset"))
    from keras_3t import presets

    reloaded = presets.load(str(tmp_path / "preset"))
    assert reloaded.image_converter.get_config() == converter.get_config()
    photo = np.full((1, 40, 30, 3), 90, "uint8")
    np.testing.assert_allclose(reloaded.encode_image(photo), model.encode_image(photo), atol=1e-5)
